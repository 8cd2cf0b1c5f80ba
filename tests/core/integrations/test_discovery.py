"""Topic levels and ids from any camera name; configs in Home Assistant's discovery shape."""

from __future__ import annotations

from core.integrations.discovery import Topics, slug


def test_safe_names_stay_and_others_become_distinct_safe_ones() -> None:
    assert slug("front_door") == "front_door" and slug("Garage-2") == "Garage-2"
    odd = [slug(name) for name in ("front door", "front/door", "front+door", "front#door", "vorgarten-ü")]
    assert len(set(odd)) == len(odd)
    assert all(s.replace("_", "").replace("-", "").isalnum() and s.isascii() for s in odd)
    assert slug("front door").startswith("front_door_")


def test_a_camera_with_an_odd_name_gets_topics_without_wildcards_or_levels() -> None:
    topics = Topics("insane", "homeassistant")
    for topic in (topics.verdict("a/b#+"), topics.label("a/b#+", "hot dog")):
        assert topic.count("/") == 2 and "+" not in topic and "#" not in topic
    topic, config = topics.binary_sensor("a/b#+", "hot dog")
    assert topic.startswith("homeassistant/binary_sensor/insane/") and topic.endswith("/config")
    assert config["name"] == "hot dog" and config["device"]["name"] == "a/b#+"
    assert config["state_topic"] == topics.label("a/b#+", "hot dog")


def test_a_second_prefix_keeps_its_entities_apart() -> None:
    one, two = Topics("insane"), Topics("insane2")
    assert one.binary_sensor("cam", "person")[1]["unique_id"] != two.binary_sensor("cam", "person")[1]["unique_id"]
    assert one.verdict_sensor("cam")[0] != two.verdict_sensor("cam")[0]
    assert two.availability == "insane2/status"
