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
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

APP_NAME = "insane"
ENV_PREFIX = "INSANE_"


class SettingsError(Exception):
    """A setting has a value we cannot use. ``str()`` is a message fit to show the user."""


def default_config_file() -> Path:
    return platformdirs.user_config_path(APP_NAME) / "config.toml"


def default_model_dir() -> Path:
    return platformdirs.user_cache_path(APP_NAME) / "models"


class Settings(BaseSettings):
    """Every knob of the relay, the worker and the tray app, with its expected form."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

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
    lane_backlog_max: int = Field(20000, ge=1, description="entries in a lane before new events get 503")
    blob_ttl_s: int = Field(3600, ge=10, description="seconds an uploaded JPEG is kept in Redis")
    requeue_after_s: float = Field(300.0, gt=0, description="seconds without a result before an event is re-queued")
    reconcile_interval_s: float = Field(30.0, gt=0, description="seconds between reconciler passes")
    max_moments: int = Field(64, ge=1, le=1000, description="moments per event, 1 to 1000")
    max_image_bytes: int = Field(8_000_000, ge=1000, description="bytes per uploaded JPEG")
    max_request_bytes: int = Field(64_000_000, ge=1000, description="bytes per events request")
    max_image_pixels: int = Field(40_000_000, ge=1, description="pixels per image")
    max_url_length: int = Field(2048, ge=16, le=65536, description="characters per moment URL")
    key_cache_s: float = Field(5.0, ge=0, le=300, description="seconds an API key or worker token stays cached")
    delivery_record_s: int = Field(
        21600, ge=60, description="seconds the relay remembers which workers an event went to (their late results)"
    )
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="webhook delivery attempts")

    # The worker.
    relay_url: str = Field("http://127.0.0.1:8787", description="the relay's base URL, http(s)://host[:port]")
    model: str = Field("yolov8n", description="a model name from `insane model list`, or a path to a .onnx file")
    model_dir: Path = Field(default_factory=default_model_dir, description="a folder for downloaded models")
    worker_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=256,
        description="a number of CPU threads for inference, 1 to 256",
    )
    use_gpu: bool = Field(False, description="true or false: prefer a GPU execution provider when present")

    # detector: thresholds and input shape of the model (core/detect).
    detect_conf: float = Field(0.25, ge=0, le=1, description="a minimum confidence from 0 to 1")
    detect_classes: list[str] | None = Field(
        None, description='class names to keep, e.g. ["person", "car"] (default: all)'
    )
    detect_rect: bool = Field(
        True, description="true or false: a 384×640 input for 16:9 frames instead of 640×640 (~40% less work)"
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
    worker_batch_wait_ms: float = Field(20.0, ge=0, le=5000, description="milliseconds a batch waits to fill")
    worker_latency_target_ms: float = Field(
        500.0, gt=0, le=60000, description="milliseconds one batch should take; the batch size adapts to it"
    )
    worker_decode_threads: int = Field(2, ge=1, le=64, description="threads decoding JPEGs, 1 to 64")
    worker_k_max: int = Field(64, ge=1, le=1000, description="moments reviewed per event at most (Pro lane)")
    worker_k_max_standard: int = Field(32, ge=1, le=1000, description="moments reviewed per event at most (standard)")
    worker_k_floor: int = Field(8, ge=1, le=1000, description="K never shrinks below this on the Pro lane")
    worker_k_floor_standard: int = Field(4, ge=1, le=1000, description="K never shrinks below this on standard")
    worker_drain_target_s: float = Field(
        60.0, gt=0, description="seconds of backlog before K shrinks (queue depth × moments ÷ images/s)"
    )
    worker_backfill: bool = Field(True, description="true or false: review skipped moments of shrunk events when idle")
    worker_cache_mb: int = Field(256, ge=8, le=65536, description="megabytes of prefetched images kept in memory")
    worker_fetch_timeout_s: float = Field(15.0, gt=0, le=300, description="seconds one image download may take")
    worker_fetch_concurrency: int = Field(16, ge=1, le=256, description="image downloads at once, in all")
    worker_fetch_per_host: int = Field(4, ge=1, le=64, description="image downloads at once from one host")
    worker_pictures_other_tenants: bool = Field(
        False,
        description="true or false: keep and show pictures of other tenants' events in the dashboard "
        "(a shared worker's events are all other tenants'; a dedicated worker always keeps its own tenant's)",
    )

    # tray: the desktop app (desktop/).
    start_at_login: bool = Field(False, description="true or false: start the tray app when the user logs in")
    tray_alert_after_s: float = Field(
        120.0, ge=0, le=86400, description="seconds the relay may stay unreachable before the tray notifies the user"
    )

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
        return (init_settings, env_settings, _TomlSource(settings_cls))


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


def _describe(settings_cls: type[Settings], error: dict[str, Any], toml_keys: set[str]) -> str:
    name = str(error["loc"][0]) if error["loc"] else "?"
    field = settings_cls.model_fields.get(name)
    if field is None:
        return f"config file: unknown setting {name!r}"
    env_name = f"{ENV_PREFIX}{name.upper()}"
    where = env_name if env_name in os.environ or name not in toml_keys else f"{name} (config file)"
    value = error.get("input")
    if isinstance(value, SecretStr) or name == "admin_token":
        value = "********"
    msg = error["msg"].removeprefix("Value error, ")
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
