"""Configuration: defaults < TOML file (``--config``/``RECX_CONFIG``) < ``RECX_*`` environment.

Nested settings use ``__`` in environment variables, e.g. ``RECX_KAFKA__BOOTSTRAP_SERVERS``.
docs/reference/settings.md is generated from the field descriptions here
(``python -m recx_worker.devtools.gen_docs``); a test fails when it is stale.
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
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated brokers")
    security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: str | None = Field(None, description="e.g. PLAIN, SCRAM-SHA-512")
    sasl_plain_username: str | None = Field(None, description="SASL user")
    sasl_plain_password: str | None = Field(None, description="SASL password (use a Secret)")
    ssl_cafile: str | None = Field(None, description="CA bundle for TLS")
    input_topic: str = Field("recommendations", description="Recommendation events (consumed)")
    output_topic: str = Field("explanations", description="Explanation events (published)")
    dlq_topic: str = Field("recommendations.dlq", description="Dead letters (published)")
    group_id: str = Field(
        "recx-workers", description="Consumer group: all workers of one deployment"
    )
    exactly_once: bool = Field(
        False, description="Kafka transactions instead of at-least-once delivery"
    )
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
    explainers: list[str] = Field(
        default_factory=lambda: ["lora", "prompt", "template"],
        description="Fallback chain, first to last (explainer plugin names)",
    )
    deadline_ms: dict[str, int] = Field(
        default_factory=lambda: {"lora": 120_000, "prompt": 120_000, "template": 1_000},
        description="Per-stage deadline for one micro-batch (CPU-sized; on a GPU 5-10 s is ample)",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-explainer constructor options (`[chain.options.<name>]`)",
    )
    max_words: int = Field(25, description="Longest explanation, in words")
    reject_negative: bool = Field(
        True, description="Guard rejects explanations with negative sentiment (VADER)"
    )
    negative_threshold: float = Field(
        -0.05,
        ge=-1.0,
        le=1.0,
        description="VADER compound score at or below which text is negative",
    )


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
    session_timeout_ms: int = Field(
        8_000,
        ge=1000,
        description="Kafka session.timeout.ms: how soon the group notices a killed worker "
        "and moves its partitions (the broker's minimum is group.min.session.timeout.ms, 6 s)",
    )
    heartbeat_interval_ms: int = Field(
        1_000, ge=100, description="Kafka heartbeat.interval.ms (at most a third of the session)"
    )
    static_membership: bool = Field(
        False,
        description="Join as a static member (group.instance.id = recx-<worker_id>): a "
        "restarted worker with the same worker_id takes its partitions back without a "
        "rebalance. Needs a worker_id unique in the group and stable across restarts",
    )
    latency_target_ms: int = Field(
        0,
        ge=0,
        description="Deadline-aware batching: a chain stage gets only the requests it is "
        "measured to answer within min(its deadline, this target); the rest go to the next "
        "stage at once (0 = off: each stage gets every pending request)",
    )
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECX_", env_nested_delimiter="__", extra="ignore", toml_file=None
    )

    paths: PathSettings = Field(default_factory=PathSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)

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
