"""One typed settings object per process.

Values come, highest first, from ``INSANE_*`` environment variables, then the TOML file named by
``INSANE_CONFIG`` (default: ``config.toml`` in the platform's config folder), then the defaults below.

    settings = load_settings()          # raises SettingsError with one line per bad value
    settings.relay_port

Entry points turn a :class:`SettingsError` into its message and exit code 2; library code never
reads the environment itself.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from core.protocol import Lane

APP_NAME = "insane"
ENV_PREFIX = "INSANE_"
MAX_MOMENTS = 64  # moments an event may have (INSANE_MAX_MOMENTS)
# K, the moments reviewed per event, per lane: at most (Pro: every moment an event may have), and the floor
# the auto-throttle never shrinks it below (core/worker/throttle.py). The settings' defaults and the worker's.
K_MAX: dict[Lane, int] = {"pro": MAX_MOMENTS, "standard": 32}
K_FLOOR: dict[Lane, int] = {"pro": 8, "standard": 4}


class SettingsError(Exception):
    """A setting has a value we cannot use. ``str()`` is a message fit to show the user."""


def default_config_file() -> Path:
    return platformdirs.user_config_path(APP_NAME) / "config.toml"


def default_model_dir() -> Path:
    return platformdirs.user_cache_path(APP_NAME) / "models"


def default_bridge_dir() -> Path:
    return platformdirs.user_state_path(APP_NAME) / "bridge"


class CameraOverride(BaseModel):
    """One camera's own filter for the Frigate bridge (``[frigate_camera_overrides.<camera>]``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    labels: list[str] | None = None
    zones: list[str] | None = None
    moments: int | None = Field(None, ge=1, le=1000)
    frame_interval_s: float | None = Field(None, ge=0.05, le=60)


class Settings(BaseSettings):
    """Every knob of the relay, the worker and the tray app, with its expected form."""

    # env_prefix_target="all": a renamed setting's old name (a validation alias) is read as INSANE_<OLD NAME>
    # from the environment and as <old name> from the TOML file, like every other setting.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_prefix_target="all", extra="forbid", validate_default=True
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="one of DEBUG, INFO, WARNING, ERROR"
    )

    # The relay.
    relay_host: str = Field("127.0.0.1", description="an interface address to listen on, e.g. 0.0.0.0")
    relay_port: int = Field(8787, ge=0, le=65535, description="a TCP port from 0 to 65535 (0: any free port)")
    database_url: str | None = Field(
        None, description="a PostgreSQL URL, postgresql://user:password@host:port/database"
    )
    redis_url: str | None = Field(None, description="a Redis URL, redis://[:password@]host:port/db")
    redis_max_connections: int = Field(
        1000,
        ge=4,
        le=100_000,
        description="Redis connections per relay process at most; past it a request waits up to 5 s for one",
    )
    admin_token: SecretStr | None = Field(
        None, min_length=16, description="a secret of at least 16 characters for the admin API"
    )

    # relay: pool, streams, limits (see docs/architecture.md).
    app_database_url: str | None = Field(
        None, description="a PostgreSQL URL for the relay's non-owner role (default: INSANE_DATABASE_URL as insane_app)"
    )
    relay_migrate_on_start: bool = Field(False, description="true or false: apply migrations when the relay starts")
    db_pool_size: int = Field(32, ge=2, le=500, description="PostgreSQL connections per relay process, 2 to 500")
    lease_idle_s: float = Field(60.0, gt=0, le=3600, description="seconds before a leased entry is reclaimed")
    max_deliveries: int = Field(
        5, ge=1, le=100, description="deliveries before an entry goes to the dead-letter stream"
    )
    lane_backlog_max: int = Field(20000, ge=1, description="entries in a tenant's lane before its new events get 503")
    blob_ttl_s: int = Field(
        3600, ge=10, description="seconds an uploaded JPEG stays cached in Redis, and kept after a shrunk review"
    )
    blob_store_max_mb: int = Field(
        20_000, ge=1, description="megabytes of uploaded JPEGs the relay's database holds before uploads get 503"
    )
    requeue_after_s: float = Field(300.0, gt=0, description="seconds without a result before an event is re-queued")
    reconcile_interval_s: float = Field(30.0, gt=0, description="seconds between reconciler passes")
    max_moments: int = Field(MAX_MOMENTS, ge=1, le=1000, description="moments per event, 1 to 1000")
    max_image_bytes: int = Field(8_000_000, ge=1000, description="bytes per uploaded JPEG")
    max_request_bytes: int = Field(64_000_000, ge=1000, description="bytes per events request")
    max_image_pixels: int = Field(40_000_000, ge=1, description="pixels per image")
    max_url_length: int = Field(2048, ge=16, le=65536, description="characters per moment URL")
    key_cache_s: float = Field(5.0, ge=0, le=300, description="seconds an API key or worker token stays cached")
    routing_shared_after_s: float = Field(
        30.0, ge=0, le=86400, description="seconds an own-then-shared tenant's event waits for its own workers"
    )
    lease_poll_s: float = Field(
        5.0, gt=0, le=60, description="seconds a waiting lease looks again without a work signal"
    )
    census_interval_s: float = Field(
        2.0, gt=0, le=300, description="seconds between counts of the waiting work (queue depth, /metrics)"
    )
    delivery_record_s: int = Field(
        21600, ge=60, description="seconds the relay remembers which workers an event went to (their late results)"
    )
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="webhook delivery attempts")
    vision_deadline_s: float = Field(
        10.0, gt=0, le=300, description="seconds a DeepStack-API request waits for its result before an error"
    )

    # The worker.
    relay_url: str = Field("http://127.0.0.1:8787", description="the relay's base URL, http(s)://host[:port]")
    model: str = Field("yolov8n", description="a model name from `insane model list`, or a path to a .onnx file")
    model_dir: Path = Field(default_factory=default_model_dir, description="a folder for downloaded models")
    model_mirror: str | None = Field(
        None,
        description="an http(s) base URL serving the known models' files by name, instead of their sources "
        "(same size and SHA-256 checks)",
    )
    model_catalog: Path | None = Field(
        None,
        description='a JSON file of more models to fetch by name, {"models": [{"name", "url", "sha256", "size"}]} '
        "(a .pt is converted to ONNX)",
    )
    worker_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=256,
        description="a number of CPU threads for inference, 1 to 256",
    )
    use_gpu: bool = Field(False, description="true or false: prefer a GPU execution provider when present")
    gpu_cache_dir: Path | None = Field(
        None,
        description="a folder for TensorRT engines, fp16 model copies and OpenVINO compiled models, kept across "
        "restarts (default: an engines folder next to the default model folder)",
    )

    # detector: thresholds and input shape of the model (core/detect).
    detect_conf: float = Field(0.25, ge=0, le=1, description="a minimum confidence from 0 to 1")
    detect_classes: list[str] | None = Field(
        None, description='class names to keep, e.g. ["person", "car"] (default: all)'
    )
    detect_rect: bool | None = Field(
        None,
        description="unset: each frame's input fits its own aspect (16:9 → 384×640, 4:3 → 480×640, as Ultralytics); "
        "true: every frame into one 384×640 input; false: every frame into 640×640",
    )
    detect_precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        "auto",
        description="auto (fp16 on a GPU, INT8 on TensorRT where calibration data exists), fp32, fp16 or int8",
    )

    # worker: the engine's lease, batching, auto-throttle and fetch knobs (core/worker).
    worker_token: SecretStr | None = Field(
        None, description="the worker token from enrollment (the tray keeps it in the keyring)"
    )
    worker_source: Literal["http", "redis"] = Field(
        "http", description="http (the relay's worker API) or redis (read the streams directly, LAN workers only)"
    )
    worker_lease_events: int = Field(8, ge=1, le=64, description="events per lease call, 1 to 64")
    worker_lease_wait_s: float = Field(10.0, ge=0, le=30, description="seconds a lease long-poll waits, 0 to 30")
    worker_lease_ahead: int = Field(64, ge=1, le=4096, description="leased moments waiting for inference, at most")
    worker_batch_size: int = Field(8, ge=1, le=256, description="images per inference batch, at most (1 to 256)")
    worker_gpu_batch_max: int = Field(
        64,
        ge=0,
        le=1024,
        description="on a GPU, the largest batch tried at start; the largest within worker_latency_target_ms "
        "is used (0: worker_batch_size as set)",
    )
    worker_batch_wait_ms: float = Field(20.0, ge=0, le=5000, description="milliseconds a batch waits to fill")
    worker_latency_target_ms: float = Field(
        500.0, gt=0, le=60000, description="milliseconds one batch should take; the batch size adapts to it"
    )
    worker_decode_threads: int = Field(2, ge=1, le=64, description="threads decoding JPEGs, 1 to 64")
    worker_k_max_pro: int = Field(
        K_MAX["pro"],
        ge=1,
        le=1000,
        validation_alias=AliasChoices("worker_k_max_pro", "worker_k_max"),  # renamed: the old name still works
        description="moments reviewed per event at most (Pro lane; INSANE_WORKER_K_MAX, its old name, still works)",
    )
    worker_k_max_standard: int = Field(
        K_MAX["standard"], ge=1, le=1000, description="moments reviewed per event at most (standard)"
    )
    worker_k_floor: int = Field(K_FLOOR["pro"], ge=1, le=1000, description="K never shrinks below this on the Pro lane")
    worker_k_floor_standard: int = Field(
        K_FLOOR["standard"], ge=1, le=1000, description="K never shrinks below this on standard"
    )
    worker_drain_target_s: float = Field(
        60.0, gt=0, description="seconds of backlog before K shrinks (queue depth × moments ÷ images/s)"
    )
    worker_backfill: bool = Field(True, description="true or false: review skipped moments of shrunk events when idle")
    worker_cache_mb: int = Field(256, ge=8, le=65536, description="megabytes of prefetched images kept in memory")
    worker_fetch_timeout_s: float = Field(15.0, gt=0, le=300, description="seconds one image download may take")
    worker_fetch_concurrency: int = Field(16, ge=1, le=256, description="image downloads at once, in all")
    worker_fetch_per_host: int = Field(4, ge=1, le=64, description="image downloads at once from one host")
    worker_dedicated_tenant: UUID | None = Field(
        None,
        description="the tenant id this worker is dedicated to, as enrollment said (honours that tenant's "
        "private-host allow-list); the tray saves it when it enrolls",
    )
    worker_pictures_other_tenants: bool = Field(
        False,
        description="true or false: keep and show pictures of other tenants' events in the dashboard "
        "(a shared worker's events are all other tenants'; a dedicated worker always keeps its own tenant's)",
    )

    # worker: the DeepStack / CodeProject.AI API on the LAN (core/lan); off unless an address is set.
    serve_deepstack: str | None = Field(
        None, description="[HOST:]PORT to serve the DeepStack API on, e.g. 32168 (loopback) or 0.0.0.0:32168"
    )
    deepstack_api_key: SecretStr | None = Field(
        None, min_length=1, description="a key LAN clients must send as api_key (default: none asked)"
    )
    deepstack_max_concurrent: int = Field(
        8, ge=1, le=256, description="LAN API requests reviewed at once, 1 to 256 (4× as many more may wait)"
    )

    # tray: the desktop app (desktop/).
    start_at_login: bool = Field(False, description="true or false: start the tray app when the user logs in")
    tray_alert_after_s: float = Field(
        120.0, ge=0, le=86400, description="seconds the relay may stay unreachable before the tray notifies the user"
    )

    # bridge: the Frigate bridge and the MQTT verdict publisher (core/integrations).
    api_key: SecretStr | None = Field(
        None, description="the tenant's API key for the relay (insane bridge frigate, insane mqtt publish)"
    )
    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883", description="the MQTT broker of Frigate and Home Assistant, mqtt(s)://host[:port]"
    )
    mqtt_username: str | None = Field(None, description="a user name on the MQTT broker (default: none)")
    mqtt_password: SecretStr | None = Field(None, description="that user's password on the MQTT broker")
    mqtt_client_id: str | None = Field(
        None, min_length=1, max_length=64, description="an MQTT client id (default: insane-<command>-<host name>)"
    )
    mqtt_topic_prefix: str = Field("insane", description="the first level of the verdict topics, e.g. insane")
    mqtt_discovery_prefix: str = Field(
        "homeassistant", description="Home Assistant's MQTT discovery prefix, e.g. homeassistant"
    )
    mqtt_off_delay_s: float = Field(
        30.0, gt=0, le=86400, description="seconds a label's binary sensor stays ON after a verdict that saw it"
    )
    mqtt_labels: list[str] | None = Field(
        None, description='labels that get a binary sensor, e.g. ["person", "car"] (default: every label seen)'
    )
    frigate_url: str = Field("http://127.0.0.1:5000", description="Frigate's HTTP API, http(s)://host[:port]")
    frigate_username: str | None = Field(None, description="a Frigate user, where Frigate's auth is on")
    frigate_password: SecretStr | None = Field(None, description="that Frigate user's password")
    frigate_topic_prefix: str = Field("frigate", description="Frigate's MQTT topic prefix, e.g. frigate")
    frigate_cameras: list[str] | None = Field(
        None, description='Frigate cameras to forward, e.g. ["front_door"] (default: all)'
    )
    frigate_labels: list[str] | None = Field(
        None, description='Frigate labels to forward, e.g. ["person", "car"] (default: all)'
    )
    frigate_zones: list[str] | None = Field(
        None, description='forward only objects that entered one of these zones, e.g. ["porch"] (default: anywhere)'
    )
    frigate_camera_overrides: dict[str, CameraOverride] = Field(
        {}, description="per camera: labels, zones, moments, frame_interval_s, enabled (a table per camera)"
    )
    frigate_label_map: dict[str, list[str]] = Field(
        {},
        description='model labels that confirm a Frigate label, e.g. {"person": ["person", "Normal"]} '
        "(default: the same name)",
    )
    frigate_moments: int = Field(
        24, ge=1, le=1000, description="moments per tracked object: its snapshot and frames, 1 to 1000"
    )
    frigate_frame_interval_s: float = Field(
        0.5, ge=0.05, le=60, description="seconds between frames taken from latest.jpg while an object is tracked"
    )
    frigate_max_event_s: float = Field(
        60.0, gt=0, le=3600, description="seconds an object is followed at most before its event is posted"
    )
    bridge_spool_mb: int = Field(
        512, ge=1, le=1_000_000, description="megabytes of events kept on disk while the relay is unreachable"
    )
    bridge_state_dir: Path = Field(
        default_factory=default_bridge_dir, description="a folder for the bridge's queue and stream cursors"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://host[:port] or mqtts://host[:port]")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if parts.username or parts.password or parts.path not in ("", "/"):
            raise ValueError("give only mqtt(s)://host[:port]; the user goes in INSANE_MQTT_USERNAME")
        return value

    @field_validator("frigate_url")
    @classmethod
    def _check_frigate_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
            raise ValueError("must start with http:// or https:// and name a host")
        return value.rstrip("/")

    @field_validator("mqtt_topic_prefix", "mqtt_discovery_prefix", "frigate_topic_prefix")
    @classmethod
    def _check_topic_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(c in value for c in "+#\0"):
            raise ValueError("must be a topic without wildcards (+, #), e.g. frigate")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("model_mirror")
    @classmethod
    def _check_model_mirror(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("serve_deepstack")
    @classmethod
    def _check_serve_deepstack(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "off"):
            return None
        from core.lan.address import parse_address

        host, port = parse_address(value)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @field_validator("relay_url")
    @classmethod
    def _check_relay_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Init arguments (command-line flags) beat the environment, which beats the TOML file.
        return tuple(_ByName(s) for s in (init_settings, env_settings, _TomlSource(settings_cls)))


class _ByName(PydanticBaseSettingsSource):
    """Another source, with a value given under a setting's old name moved to its name: the order of the
    sources then decides between the old name in one and the new name in another, as for any setting (left
    as they are, both keys would reach validation, and the one the alias did not pick is an unknown key)."""

    def __init__(self, source: PydanticBaseSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self.source = source

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.source.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = dict(self.source())
        for name, field in self.settings_cls.model_fields.items():
            given = [n for n in _names(name, field) if n in values]
            if given:
                chosen = values[given[0]]  # within one source the new name comes first
                for key in given:
                    del values[key]
                values[name] = chosen
        return values


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file; its keys are the setting names without the prefix (``relay_port = 8080``)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path = Path(os.environ.get(f"{ENV_PREFIX}CONFIG") or default_config_file())
        self.data = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if os.environ.get(f"{ENV_PREFIX}CONFIG"):
                raise SettingsError(f"{ENV_PREFIX}CONFIG: no such file {self.path}") from None
            return {}
        except OSError as exc:
            raise SettingsError(f"config file {self.path}: {exc.strerror}") from exc
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {self.path}: not valid TOML ({exc})") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def _names(name: str, field: Any) -> list[str]:
    """A setting's name, then the old names it is still read by (its validation alias choices)."""
    alias = field.validation_alias
    return [str(choice) for choice in alias.choices] if isinstance(alias, AliasChoices) else [name]


def _describe(settings_cls: type[Settings], error: ErrorDetails, toml_keys: set[str]) -> str:
    name = str(error["loc"][0]) if error["loc"] else "?"
    field = settings_cls.model_fields.get(name)
    if field is None:
        return f"config file: unknown setting {name!r}"
    names = _names(name, field)
    in_env = [n for n in names if f"{ENV_PREFIX}{n.upper()}" in os.environ]
    in_toml = [n for n in names if n in toml_keys]
    env_name = f"{ENV_PREFIX}{(in_env or names)[0].upper()}"  # the environment beats the TOML file
    where = f"{in_toml[0]} (config file)" if in_toml and not in_env else env_name
    value = error.get("input")
    if isinstance(value, SecretStr) or "SecretStr" in str(field.annotation):
        value = "********"
    msg = error["msg"].removeprefix("Value error, ")
    inner = ".".join(str(p) for p in error["loc"][1:])  # where inside a list or table, e.g. front_door.moments
    if inner:
        msg = f"{inner}: {msg}"
    expected = f"; expected {field.description}" if field.description else ""
    return f"{where}={value!r} is invalid: {msg}{expected}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; ``overrides`` (non-None values) come from command-line flags."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        toml_keys = set(_TomlSource(Settings).data)
        lines = [_describe(Settings, err, toml_keys) for err in exc.errors()]
        raise SettingsError("\n".join(lines)) from None
    except PydanticSettingsError as exc:
        # A list or table setting given in the environment is JSON; pydantic-settings names the field.
        found = re.search(r'field "(\w+)"', str(exc))
        field = Settings.model_fields.get(found[1]) if found else None
        if found is None or field is None:
            raise SettingsError(str(exc)) from None
        expected = f"; expected {field.description}" if field.description else ""
        raise SettingsError(f"{ENV_PREFIX}{found[1].upper()} is not valid JSON{expected}") from None


def reference() -> list[tuple[str, str, str]]:
    """(environment variable, default, expected form) for each setting, for the README and ``--help``."""
    rows = []
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "(computed)"
        else:
            default = "" if field.default is None else str(field.default)
        rows.append((f"{ENV_PREFIX}{name.upper()}", default, field.description or ""))
    return rows


def markdown_table() -> str:
    """The README's settings table (``python -m core.settings`` prints it)."""
    lines = ["| variable | default | expected |", "| --- | --- | --- |"]
    for name, default, expected in reference():
        escaped = expected.replace("|", "\\|")
        lines.append(f"| `{name}` | {default} | {escaped} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
