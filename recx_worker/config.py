"""Configuration: defaults < TOML file (``--config``/``RECX_CONFIG``) < ``RECX_*`` environment.

Nested settings use ``__`` in environment variables, e.g. ``RECX_KAFKA__BOOTSTRAP_SERVERS``.
Every setting is listed in README "Configuration"; a test keeps that table true.
"""

from __future__ import annotations

import os
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# The file given to load_settings() for this call only (the environment is left alone).
_CONFIG_FILE: ContextVar[str | None] = ContextVar("recx_config_file", default=None)

# The demo data shipped in the repo (data/README.md); point paths.raw_data at your own reviews.
DEFAULT_RAW_DATA = Path("data/amazon-2014-musical-instruments-5core")
CACHE_HOME = Path(os.environ.get("RECX_CACHE_HOME", Path.home() / ".cache" / "recx"))


class PathSettings(BaseModel):
    raw_data: Path = Field(
        DEFAULT_RAW_DATA, description="Folder with the raw reviews + features.txt"
    )
    data_dir: Path = Field(Path("var/data/musical"), description="Output of `recx data prepare`")
    index_dir: Path = Field(Path("var/index/musical"), description="Output of `recx index build`")
    adapter_dir: Path = Field(
        Path("adapters/smollm2-musical-v2"), description="LoRA adapter used by the lora explainer"
    )
    model_cache: Path = Field(CACHE_HOME / "models", description="Converted base-model checkpoints")


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None
    ssl_cafile: str | None = None
    input_topic: str = "recommendations"
    output_topic: str = "explanations"
    dlq_topic: str = "recommendations.dlq"
    group_id: str = "recx-workers"
    exactly_once: bool = False
    client_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra kafka-python options passed through verbatim"
    )

    def client_config(self) -> dict[str, Any]:
        """Connection options shared by every kafka-python client recx creates."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password", "ssl_cafile"):
            if (value := getattr(self, key)) is not None:
                config[key] = value
        return config | self.client_options


class ChainSettings(BaseModel):
    explainers: list[str] = Field(default_factory=lambda: ["lora", "prompt", "template"])
    deadline_ms: dict[str, int] = Field(
        default_factory=lambda: {"lora": 120_000, "prompt": 120_000, "template": 1_000},
        description="Per-stage deadline for one micro-batch",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-explainer constructor options"
    )
    max_words: int = 25


class ValidationSettings(BaseModel):
    max_message_bytes: int = Field(65_536, description="Larger input messages are dead-lettered")
    max_history: int = Field(50, description="Longest accepted `history` in a recommendation")


class WorkerSettings(BaseModel):
    """``recx worker``: batching, delivery, shutdown, observability."""

    worker_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable id of this worker instance (default: host name); names its "
        "transactional id in exactly-once mode",
    )
    max_batch: int = Field(64, ge=1, description="Most requests in one explainer micro-batch")
    max_wait_ms: int = Field(50, ge=0, description="Longest wait to fill a micro-batch")
    max_buffered: int = Field(
        512, ge=1, description="Fetched events held before the worker pauses its partitions"
    )
    max_poll_records: int = Field(500, ge=1, description="Most records one poll returns")
    max_poll_interval_ms: int = Field(
        300_000, ge=1000, description="Kafka max.poll.interval.ms (the loop polls far more often)"
    )
    session_timeout_ms: int = Field(45_000, ge=1000, description="Kafka session.timeout.ms")
    heartbeat_interval_ms: int = Field(3_000, ge=100, description="Kafka heartbeat.interval.ms")
    auto_offset_reset: str = Field(
        "earliest", description="Where a new group starts: earliest | latest"
    )
    grace_period_s: float = Field(
        30.0, gt=0, description="SIGTERM/SIGINT: time to finish in-flight work and commit"
    )
    produce_timeout_s: float = Field(
        30.0, gt=0, description="Wait for the broker's acknowledgement before retrying a send"
    )
    produce_retry_backoff_ms: int = Field(200, ge=0, description="First produce-retry backoff")
    produce_retry_backoff_max_ms: int = Field(10_000, ge=0, description="Largest backoff")
    linger_ms: int = Field(5, ge=0, description="Producer linger.ms")
    transaction_timeout_ms: int = Field(
        60_000, ge=1000, description="Exactly-once mode: Kafka transaction.timeout.ms"
    )
    metrics_host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz, /readyz")
    metrics_port: int = Field(9400, ge=-1, description="HTTP port; 0 = any free port, -1 = off")
    lag_interval_s: float = Field(5.0, gt=0, description="How often consumer lag is measured")
    log_level: str = Field("INFO", description="DEBUG | INFO | WARNING | ERROR")
    log_format: str = Field("json", description="json | console")
    plugin_modules: list[str] = Field(
        default_factory=list,
        description="Extra plugin modules to import and register (besides entry points)",
    )
    consumer_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra kafka-python consumer options"
    )
    producer_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra kafka-python producer options"
    )


class ExperimentArm(BaseModel):
    """One arm: an explainer chain and/or an explainer option set (over ``[chain]``)."""

    name: str = Field(min_length=1, max_length=128)
    explainers: list[str] | None = Field(None, description="Chain of this arm (default: [chain])")
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-explainer options merged over [chain.options]"
    )
    weight: float = Field(1.0, gt=0, description="Share of users (normalised over the arms)")


class ExperimentSettings(BaseModel):
    """``[experiments]``: assign each user to an arm by hash(user id, salt); off when no arms."""

    name: str = Field("explainer-ab", min_length=1, description="Experiment name (in events)")
    salt: str = Field("recx-1", min_length=1, description="Change it to re-randomise users")
    arms: list[ExperimentArm] = Field(default_factory=list, description="Empty: no experiment")
    adaptive: bool = Field(
        False, description="Thompson sampling on the helpful rate (reads the feedback store)"
    )
    adaptive_floor: float = Field(
        0.1, ge=0, lt=1, description="Adaptive: least share of users each arm keeps"
    )
    adaptive_refresh_s: float = Field(60.0, gt=0, description="Adaptive: re-read the store")

    @property
    def enabled(self) -> bool:
        return bool(self.arms)


class FeedbackSettings(BaseModel):
    """``[feedback]``: the feedback topic, its consumer (``recx feedback``) and its store."""

    topic: str = Field("explanation-feedback", description="Feedback events (key: user id)")
    dlq_topic: str = Field("explanation-feedback.dlq", description="Bad feedback, with reason")
    group_id: str = Field("recx-feedback", description="Consumer group of `recx feedback`")
    store_path: Path = Field(
        Path("var/feedback/feedback.sqlite3"), description="Aggregation store (SQLite)"
    )
    late_after_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Feedback later than this after the explanation is "
        "counted as late and not attributed to the arm",
    )
    max_message_bytes: int = Field(16_384, description="Larger feedback is dead-lettered")
    metrics_port: int = Field(9401, ge=-1, description="/metrics port; 0 = any, -1 = off")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECX_", env_nested_delimiter="__", extra="ignore", toml_file=None
    )

    paths: PathSettings = Field(default_factory=PathSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    experiments: ExperimentSettings = Field(default_factory=ExperimentSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get() or os.environ.get("RECX_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"config file {config_file} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (or ``RECX_CONFIG``), the environment and ``overrides``."""
    token = _CONFIG_FILE.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_FILE.reset(token)
