"""The one configuration object, read from the environment once at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError


def _env(name: str) -> Any:
    """Accept the contract's bare name (README.md#configuration) and the GOVPIPE_-prefixed one."""
    return Field(validation_alias=AliasChoices(name, f"GOVPIPE_{name}"))


class Settings(BaseSettings):
    """Every knob of govpipe. Frozen: built once and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="GOVPIPE_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(
        "localhost:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "GOVPIPE_KAFKA_BOOTSTRAP_SERVERS"),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # State and schemas
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("REDIS_URL", "GOVPIPE_REDIS_URL"),
    )
    # Prefix of the registry keys (docs/contracts/state.md: "nhi:"); no glob characters (SCAN
    # patterns).
    redis_key_prefix: str = Field("nhi:", pattern=r"^[^*?\[\]\s]{1,64}$")
    schema_registry_url: str | None = Field(
        None, validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "GOVPIPE_SCHEMA_REGISTRY_URL")
    )
    policy_file: Path | None = Field(
        None, validation_alias=AliasChoices("GOVPIPE_POLICY", "GOVPIPE_POLICY_FILE")
    )
    #: A directory of the user's own rule files (docs/rules.md), loaded beside the
    #: built-in detectors and the ``govpipe.detectors`` entry points.
    rules_dir: Path | None = None

    # Topics (names live here so they can be overridden; specs live in topics.py)
    topic_events: str = "agent.events.v1"
    topic_dlq: str = "agent.events.dlq.v1"
    topic_alerts: str = "governance.alerts.v1"
    topic_metrics: str = "governance.metrics.v1"
    topic_subjects: str = "govpipe.subjects.v1"
    topic_evidence: str = "governance.evidence.v1"
    events_partitions: int = Field(6, ge=1, le=1024)
    subjects_partitions: int = Field(6, ge=1, le=1024)
    output_partitions: int = Field(3, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=7)

    # Worker
    app_id: str = Field("govpipe", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    data_dir: Path = Field(
        Path.home() / ".cache" / "govpipe",
        validation_alias=AliasChoices("FAUST_DATADIR", "GOVPIPE_DATA_DIR"),
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    #: How other workers reach this one's web port (the URL the consumer group's
    #: assignment advertises for it; evidence queries are forwarded there). Default
    #: ``http://WEB_HOST:WEB_PORT``, a wildcard WEB_HOST read as the host name's address.
    web_url: str | None = None
    #: A stage-2 worker (or a Service in front of them) that ``govpipe trace`` asks
    #: first (docs/contracts/evidence.md); default ``http://WEB_HOST:WEB_PORT``, and
    #: "off" reads the evidence topic only.
    trace_url: str | None = None
    worker_stages: list[Literal[1, 2]] = Field(default=[1, 2], min_length=1)
    batch_max_records: int = Field(500, ge=1, le=100_000)
    batch_max_wait_s: float = Field(0.05, gt=0, le=10)
    #: How long one stage-2 unit may keep the event loop (stage2_runner.UnitSizer): the
    #: longest /metrics, heartbeats and SIGTERM wait behind stage 2; larger units
    #: cost fewer changelog and output round trips (docs/internals.md).
    stage2_unit_budget_s: float = Field(0.1, gt=0, le=10)
    #: Compression of every batch the worker produces (changelog, internal topic,
    #: outputs). The broker keeps batches as produced: the stage-2 changelog, JSON state
    #: rewritten every unit, is most of what it stores (bench/soak.py).
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    max_record_bytes: int = Field(2 * 1024 * 1024 - 4096, ge=1024)
    max_events_per_record: int = Field(10_000, ge=1)
    metric_windows_s: list[int] = Field(default_factory=lambda: [60], min_length=1)
    metrics_lateness_s: int = Field(900, ge=0)
    #: An input partition caught up to its end offset and silent this long stops
    #: holding the watermark back (Flink's idleness); it holds again on new data.
    idle_partition_s: float = Field(10.0, gt=0, le=3600)
    #: Watermark alignment: stage 1 pauses an input partition whose event time runs
    #: this far ahead of the slowest active one it owns (bounds waiting state in backfills).
    max_partition_skew_s: int = Field(3600, ge=60)
    #: A task never completed or an approval never decided is expired after this long
    #: with no event and no finding about it (0: never): abandoned work must not grow
    #: the state for months. Its findings stand; a later event starts a fresh state.
    abandoned_after_s: int = Field(30 * 86400, ge=0)
    metrics_format: Literal["avro", "json"] = "avro"
    #: Task evidence dossiers (docs/contracts/evidence.md): every event of a task also
    #: reaches the task's stage-2 subject, which publishes its dossier.
    evidence: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        if not hosts:
            raise ValueError("needs at least one host:port")
        for host in hosts:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{host!r} is not host:port")
        return ",".join(hosts)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://", "mock://")):
            raise ValueError("must start with http://, https:// or mock://")
        return value

    @field_validator("web_url", "trace_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value in (None, ""):
            return None
        off = value == "off" and info.field_name == "trace_url"
        if not off and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @property
    def web_advertised_url(self) -> str:
        """This worker's web URL as other workers reach it: ``web_url``, else
        ``WEB_HOST:WEB_PORT``, with a wildcard host replaced by the address the host
        name resolves to (a pod's or container's IP)."""
        if self.web_url:
            return self.web_url
        host = self.web_host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a comparison, not a bind)
            import socket

            try:
                host = socket.gethostbyname(socket.gethostname())
            except OSError:
                host = "127.0.0.1"
        return f"http://{host}:{self.web_port}"

    @property
    def trace_worker_url(self) -> str | None:
        """Where ``govpipe trace`` asks first, or None to read the topic only."""
        if self.trace_url == "off":
            return None
        return self.trace_url or self.web_advertised_url

    @field_validator("rules_dir", mode="before")
    @classmethod
    def _rules_dir_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # an empty variable means "no rules dir"

    @field_validator("rules_dir")
    @classmethod
    def _rules_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @property
    def redis_url_redacted(self) -> str:
        """The Redis URL with any password replaced, for logs."""
        return redact_url(self.redis_url.get_secret_value())

    @property
    def broker_url(self) -> str:
        """faust's broker URL list built from the bootstrap servers."""
        return ";".join(f"kafka://{h}" for h in self.kafka_bootstrap_servers.split(","))

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka settings shared by admin, producer and consumer clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username or ""
            secret = self.kafka_sasl_password
            conf["sasl.password"] = secret.get_secret_value() if secret else ""
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            conf["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile:
            conf["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        return conf


_BARE_ENV = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "redis_url": "REDIS_URL",
    "schema_registry_url": "SCHEMA_REGISTRY_URL",
    "policy_file": "GOVPIPE_POLICY",
    "data_dir": "FAUST_DATADIR",
}


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that rebuild these settings in a child process."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[_BARE_ENV.get(name, f"GOVPIPE_{name.upper()}")] = str(value)
    return env


def redact_url(url: str) -> str:
    """Drop the password from scheme://user:password@host URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.partition(":")[0]
    return f"{scheme}://{user + ':' if user else ''}***@{host}"


def _env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable behind an error location (``batch_max_records`` ->
    ``GOVPIPE_BATCH_MAX_RECORDS``), as the user has to spell it."""
    if not loc:
        return "settings"
    head = str(loc[0])
    name = head.lower()
    if name in Settings.model_fields:
        head = _BARE_ENV.get(name, f"GOVPIPE_{name.upper()}")
    return ".".join([head, *(str(p) for p in loc[1:])])


def load_settings(**overrides: Any) -> Settings:
    """Build Settings or raise ConfigError with one line naming the bad variables."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            problems.append(f"{_env_name(err['loc'])}: {err['msg']}")
        raise ConfigError("bad configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (the CLI builds them once)."""
    return load_settings()
