"""The worker's LAN API driven by other people's clients from the registry, and by raw HTTP.

``deepstack-python`` (imported as ``deepstack``: Home Assistant's DeepStack integrations and Viseron use it)
and ``codeproject-ai-api`` (``codeprojectai``) against a real worker running real models.
"""

from __future__ import annotations

import http.client
import json

import pytest
import requests
from codeprojectai import core as cpai
from deepstack import core as ds

from insane.devkit.deepstack import WorkerThread, blank_jpeg
from tests.core.lan.harness import lan_worker

# Where the three people standing in Ultralytics' bus.jpg are (x1, y1, x2, y2), checked by eye. At its true
# 3:4 aspect (a 640×480 input, as Ultralytics' predict) the model also finds the fourth, cut off at the left
# edge, above 0.4.
BUS_PEOPLE = [(48, 399, 245, 903), (221, 406, 345, 857), (670, 380, 810, 876)]


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def boxes(preds) -> list[tuple[int, int, int, int]]:
    return [(p["x_min"], p["y_min"], p["x_max"], p["y_max"]) for p in preds]


def test_deepstack_python_finds_the_people_on_the_bus_photo(lan: WorkerThread, sample_images) -> None:
    client = ds.DeepstackObject(ip="127.0.0.1", port=lan.port, min_confidence=0.4)
    preds = client.detect(sample_images["bus.jpg"])
    assert [p["label"] for p in preds] == ["Normal"] * 4
    assert [p["confidence"] for p in preds] == sorted((p["confidence"] for p in preds), reverse=True)
    for want in BUS_PEOPLE:
        assert max(iou(want, got) for got in boxes(preds)) > 0.7, (want, boxes(preds))
    for p in preds:
        assert all(isinstance(p[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert 0 <= p["x_min"] < p["x_max"] <= 810 and 0 <= p["y_min"] < p["y_max"] <= 1080


def test_min_confidence_filters(lan: WorkerThread, sample_images) -> None:
    low = ds.DeepstackObject(ip="127.0.0.1", port=lan.port, min_confidence=0.3).detect(sample_images["bus.jpg"])
    high = ds.DeepstackObject(ip="127.0.0.1", port=lan.port, min_confidence=0.65).detect(sample_images["bus.jpg"])
    assert len(low) == 4 and min(p["confidence"] for p in low) >= 0.3
    assert 1 <= len(high) < 3 and all(p["confidence"] >= 0.65 for p in high)
    none = ds.DeepstackObject(ip="127.0.0.1", port=lan.port, min_confidence=0.99).detect(sample_images["bus.jpg"])
    assert none == []


def test_codeproject_client_gets_the_same_predictions(lan: WorkerThread, sample_images) -> None:
    client = cpai.CodeProjectAIObject(ip="127.0.0.1", port=lan.port, min_confidence=0.4)
    preds = client.detect(sample_images["bus.jpg"])
    assert [p["label"] for p in preds] == ["Normal"] * 4
    for want in BUS_PEOPLE:
        assert max(iou(want, got) for got in boxes(preds)) > 0.7


def test_the_full_body_has_codeproject_fields(lan: WorkerThread, sample_images) -> None:
    r = requests.post(
        f"{lan.url}/v1/vision/detection", files={"image": sample_images["zidane.jpg"]}, data={"min_confidence": "0.5"}
    )
    body = r.json()
    assert r.status_code == 200 and body["success"] is True and body["code"] == 200
    assert body["count"] == len(body["predictions"]) == 2
    assert body["message"] == "Found Normal, Normal"
    for key in ("inferenceMs", "processMs", "analysisRoundTripMs"):
        assert isinstance(body[key], int) and body[key] >= 0
    assert body["processMs"] >= body["inferenceMs"] and body["analysisRoundTripMs"] >= body["processMs"]
    assert body["moduleId"] == "InsaneAISecurity" and body["processedBy"] and body["timestampUTC"].endswith("GMT")
    assert body["inferenceDevice"] == "CPU"


def test_a_non_image_is_the_clients_own_error(lan: WorkerThread) -> None:
    with pytest.raises(ds.DeepstackException, match="status code: 400"):
        ds.DeepstackObject(ip="127.0.0.1", port=lan.port).detect(b"this is not a picture at all")
    with pytest.raises(cpai.CodeProjectAIException, match="400"):
        cpai.CodeProjectAIObject(ip="127.0.0.1", port=lan.port).detect(b"GIF89a truncated")
    r = requests.post(f"{lan.url}/v1/vision/detection", files={"image": b"<html>not an image</html>"})
    assert r.status_code == 400 and r.json()["success"] is False
    assert r.json()["error"].startswith("invalid image file: ")


def test_no_image_and_bad_min_confidence_are_400_with_deepstacks_words(lan: WorkerThread, sample_images) -> None:
    r = requests.post(f"{lan.url}/v1/vision/detection", data={"min_confidence": "0.4"})
    assert (r.status_code, r.json()) == (400, {"success": False, "error": "No valid image file found", "code": 400})
    r = requests.post(f"{lan.url}/v1/vision/detection", files={"picture": sample_images["bus.jpg"]})
    assert r.status_code == 400 and r.json()["error"] == "No valid image file found"
    for value, error in (
        ("abc", "Invalid value for min_confidence"),
        ("1.5", "min_confidence cannot be greater than 1"),
    ):
        r = requests.post(
            f"{lan.url}/v1/vision/detection", files={"image": sample_images["bus.jpg"]}, data={"min_confidence": value}
        )
        assert (r.status_code, r.json()["error"]) == (400, error)


def test_a_wrong_key_is_the_clients_own_error(keyed_lan: WorkerThread, sample_images) -> None:
    with pytest.raises(ds.DeepstackException, match="status code: 401"):
        ds.DeepstackObject(ip="127.0.0.1", port=keyed_lan.port, api_key="wrong").detect(sample_images["zidane.jpg"])
    # codeproject-ai-api sends no key at all: the server refuses it the same way.
    with pytest.raises(cpai.CodeProjectAIException, match="401"):
        cpai.CodeProjectAIObject(ip="127.0.0.1", port=keyed_lan.port).detect(sample_images["zidane.jpg"])
    r = requests.post(f"{keyed_lan.url}/v1/vision/detection", files={"image": sample_images["zidane.jpg"]})
    assert (r.status_code, r.json()["error"]) == (401, "Incorrect api key")


def test_the_right_key_in_the_form_a_bearer_or_the_url(keyed_lan: WorkerThread, sample_images) -> None:
    preds = ds.DeepstackObject(ip="127.0.0.1", port=keyed_lan.port, api_key="lan-secret-1").detect(
        sample_images["bus.jpg"]
    )
    assert len(preds) == 4
    # A client with a URL field but no key field: the key as the password in the URL (HTTP Basic).
    preds = cpai.CodeProjectAIObject(ip="key:lan-secret-1@127.0.0.1", port=keyed_lan.port).detect(
        sample_images["bus.jpg"]
    )
    assert len(preds) == 4
    r = requests.post(
        f"{keyed_lan.url}/v1/vision/custom/list", headers={"Authorization": "Bearer lan-secret-1"}, data={}
    )
    assert r.status_code == 200 and r.json()["models"]


def test_custom_models_list_and_run(lan: WorkerThread, sample_images) -> None:
    models = requests.post(f"{lan.url}/v1/vision/custom/list").json()
    assert models["success"] is True and len(models["models"]) == 1
    name = models["models"][0]
    preds = ds.DeepstackObject(ip="127.0.0.1", port=lan.port, custom_model=name).detect(sample_images["bus.jpg"])
    assert len(preds) == 4
    with pytest.raises(ds.DeepstackException, match="status code: 400"):
        ds.DeepstackObject(ip="127.0.0.1", port=lan.port, custom_model="no-such-model").detect(sample_images["bus.jpg"])
    assert requests.get(f"{lan.url}/v1/server/status/ping").json() == {"success": True}


def _raw(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _multipart(fields: dict[str, bytes]) -> tuple[bytes, dict[str, str]]:
    boundary = "insaneboundary7e3"
    parts = []
    for name, value in fields.items():
        filename = '; filename="f.jpg"' if name == "image" else ""
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode())
        parts.append(value + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_every_answer_has_a_content_length_and_is_never_chunked(lan: WorkerThread, sample_images) -> None:
    ok_body, ok_headers = _multipart({"image": sample_images["zidane.jpg"], "min_confidence": b"0.4"})
    bad_body, bad_headers = _multipart({"image": b"not an image"})
    cases = [
        ("POST", "/v1/vision/detection", ok_body, ok_headers, 200),
        ("POST", "/v1/vision/detection", bad_body, bad_headers, 400),
        ("POST", "/v1/vision/detection", b"", {}, 400),
        ("POST", "/v1/vision/custom/list", b"", {}, 200),
        ("GET", "/v1/server/status/ping", b"", {}, 200),
        ("GET", "/v1/vision/nowhere", b"", {}, 404),
        ("GET", "/v1/vision/detection", b"", {}, 405),
    ]
    for method, path, body, headers, status in cases:
        got, resp_headers, content = _raw(lan.port, method, path, body, headers)
        assert got == status, (path, got, content[:200])
        assert "transfer-encoding" not in resp_headers, (path, resp_headers)
        assert int(resp_headers["content-length"]) == len(content), (path, resp_headers)
        assert resp_headers["content-type"] == "application/json"
        assert json.loads(content)["success"] is (status == 200)


def test_21_objects_above_threshold_give_at_most_20_predictions(crowd_model) -> None:
    jpeg = blank_jpeg()
    with lan_worker(crowd_model) as lan:
        preds = ds.DeepstackObject(ip="127.0.0.1", port=lan.port, min_confidence=0.4).detect(jpeg)
        assert len(preds) == 20
        assert [p["label"] for p in preds] == ["person"] * 20
        confs = [p["confidence"] for p in preds]
        assert confs == sorted(confs, reverse=True) and confs[0] == pytest.approx(0.95, abs=1e-4)
        assert confs[-1] == pytest.approx(0.76, abs=1e-4)  # the 20 best of 25
        assert (preds[0]["x_min"], preds[0]["y_min"], preds[0]["x_max"], preds[0]["y_max"]) == (20, 20, 100, 100)
        body = requests.post(
            f"{lan.url}/v1/vision/detection", files={"image": jpeg}, data={"max_predictions": "25"}
        ).json()
        assert body["count"] == 25
        r = requests.post(f"{lan.url}/v1/vision/detection?max_predictions=22", files={"image": jpeg})
        assert r.json()["count"] == 22
        r = requests.post(f"{lan.url}/v1/vision/detection", files={"image": jpeg}, data={"max_predictions": "0"})
        assert r.status_code == 400
        above = requests.post(
            f"{lan.url}/v1/vision/detection", files={"image": jpeg}, data={"min_confidence": "0.895"}
        ).json()
        assert above["count"] == 6 and above["message"] == "Found person, person, person..."


def test_an_image_over_the_limit_is_413(fall_model_onnx, sample_images) -> None:
    with lan_worker(fall_model_onnx, max_image_bytes=50_000) as lan:
        r = requests.post(f"{lan.url}/v1/vision/detection", files={"image": sample_images["bus.jpg"]})
        assert r.status_code == 413 and r.json()["success"] is False
        assert "transfer-encoding" not in r.headers and r.headers["content-length"]


def test_a_chunked_upload_is_cut_at_the_limit(fall_model_onnx) -> None:
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"\xff" * 10_000  # 400 kB with no Content-Length: cut at 50 kB + framing
        yield b"\r\n--b--\r\n"

    with lan_worker(fall_model_onnx, max_image_bytes=50_000) as lan:
        r = requests.post(
            f"{lan.url}/v1/vision/detection",
            data=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert r.status_code == 413 and r.json()["success"] is False
