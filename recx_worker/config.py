"""Configuration: defaults < TOML file (``--config``/``RECX_CONFIG``) < ``RECX_*`` environment.

Nested settings use ``__`` in environment variables, e.g. ``RECX_KAFKA__BOOTSTRAP_SERVERS``.
List settings take a comma list or a JSON list (``template,lora`` or ``["template","lora"]``);
mapping settings a JSON object or ``key=value`` pairs (``lora=120000,template=1000``).
This module owns every default: other modules import the constants below instead of
repeating numbers. A bad setting raises :class:`BadSetting`, whose message is one line naming
the field, what was given and an example of what is accepted.
docs/reference/settings.md is generated from the field descriptions here
(``python -m recx_worker.devtools.gen_docs``); a test fails when it is stale.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as _SourceError

ENV_PREFIX = "RECX_"
ENV_NESTED = "__"

# The file given to load_settings() for this call only (the environment is left alone).
_CONFIG_FILE: ContextVar[str | None] = ContextVar("recx_config_file", default=None)
# The file given with ``--config`` to the current command (set by the CLI, see cli.py).
_COMMAND_CONFIG: ContextVar[str | None] = ContextVar("recx_command_config", default=None)

# -- defaults owned here (imported by the modules that need them) -----------------------------
# The demo data shipped in the repo (data/README.md); point paths.raw_data at your own reviews.
DEFAULT_RAW_DATA = Path("data/amazon-2014-musical-instruments-5core")
CACHE_HOME = Path(os.environ.get("RECX_CACHE_HOME", Path.home() / ".cache" / "recx"))
DEFAULT_EXPLAINERS = ("lora", "prompt", "template")
# Per-stage deadline for one micro-batch; a stage not listed gets DEFAULT_STAGE_DEADLINE_MS.
DEFAULT_DEADLINE_MS = {"lora": 120_000, "prompt": 120_000, "template": 1_000}
DEFAULT_STAGE_DEADLINE_MS = 10_000
DEFAULT_MAX_WORDS = 25
DEFAULT_EVIDENCE_K = 3
DEFAULT_MAX_MESSAGE_BYTES = 65_536
DEFAULT_MAX_HISTORY = 50


# -- values as people type them ----------------------------------------------------------------
def _list_value(value: Any) -> Any:
    """``a,b`` / ``["a","b"]`` / ``['a','b']`` -> ``["a", "b"]``; other types pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError("a comma list or a JSON list") from None
    return [part.strip() for part in text.split(",") if part.strip()]


def _mapping_value(value: Any) -> Any:
    """``{"a": 1}`` / ``a=1,b=2`` -> a dict; other types pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"a valid JSON object ({exc.msg})") from None
    pairs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, item = part.partition("=")
        if not sep or not key.strip():
            raise ValueError("a JSON object or key=value pairs")
        pairs[key.strip()] = _scalar(item.strip())
    return pairs


def _scalar(text: str) -> Any:
    """``5000`` -> 5000, ``true`` -> True, anything else stays text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


StrList = Annotated[list[str], NoDecode, BeforeValidator(_list_value)]
IntMap = Annotated[dict[str, int], NoDecode, BeforeValidator(_mapping_value)]
AnyMap = Annotated[dict[str, Any], NoDecode, BeforeValidator(_mapping_value)]
OptionsMap = Annotated[dict[str, dict[str, Any]], NoDecode, BeforeValidator(_mapping_value)]


class _Section(BaseModel):
    """A settings section: an unknown key is an error (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid")


#: The output producers a worker can use (``worker.producer_client``).
ProducerClient = Literal["auto", "kafka-python", "librdkafka"]
PRODUCER_CLIENTS: tuple[str, ...] = get_args(ProducerClient)


class PathSettings(_Section):
    raw_data: Path = Field(
        DEFAULT_RAW_DATA, description="Folder with the raw reviews + features.txt"
    )
    data_dir: Path = Field(Path("var/data/musical"), description="Output of `recx data prepare`")
    index_dir: Path = Field(Path("var/index/musical"), description="Output of `recx index build`")
    adapter_dir: Path = Field(
        Path("adapters/smollm2-musical-v2.1-distilled"),
        description="LoRA adapter used by the lora explainer",
    )
    model_cache: Path = Field(CACHE_HOME / "models", description="Converted base-model checkpoints")


class KafkaSettings(_Section):
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
    partitions: int = Field(
        3,
        ge=1,
        description="Partitions of the input, output and dead-letter topics "
        "(`recx topics create`); the most workers one group can keep busy",
    )
    replication_factor: int = Field(
        1, ge=1, description="Replicas of each topic (`recx topics create`); 3 in production"
    )
    client_options: AnyMap = Field(
        default_factory=dict,
        description="Extra kafka-python options passed through verbatim (every kafka-python "
        "client; not the librdkafka producer, which takes `worker.producer_options`)",
    )

    def connection(self) -> dict[str, Any]:
        """Where the cluster is and how to authenticate (kafka-python names), for any client."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password", "ssl_cafile"):
            if (value := getattr(self, key)) is not None:
                config[key] = value
        return config

    def client_config(self) -> dict[str, Any]:
        """Options shared by every kafka-python client recx creates: the connection and
        ``client_options``."""
        return self.connection() | self.client_options


class ChainSettings(_Section):
    explainers: StrList = Field(
        default_factory=lambda: list(DEFAULT_EXPLAINERS),
        description="Explainer stages in fallback order",
        examples=["template", "lora,prompt,template"],
    )
    deadline_ms: IntMap = Field(
        default_factory=lambda: dict(DEFAULT_DEADLINE_MS),
        description="Per-stage deadline for one micro-batch (ms)",
        examples=["lora=120000,template=1000"],
    )
    default_deadline_ms: int = Field(
        DEFAULT_STAGE_DEADLINE_MS, ge=1, description="Deadline of a stage not in `deadline_ms`"
    )
    options: OptionsMap = Field(
        default_factory=dict,
        description="Per-explainer constructor options",
        examples=['{"lora": {"num_beams": 1}}'],
    )
    max_words: int = Field(DEFAULT_MAX_WORDS, ge=3, description="Longest explanation (words)")
    evidence_k: int = Field(
        DEFAULT_EVIDENCE_K, ge=0, description="Supporting history items found per request"
    )
    reject_negative: bool = Field(
        True, description="Guard rejects explanations with negative sentiment (VADER)"
    )
    negative_threshold: float = Field(
        -0.05,
        ge=-1.0,
        le=1.0,
        description="VADER compound score at or below which text is negative",
    )
    unsupported_nouns: int = Field(
        0,
        description="Guard: nouns an explanation may use that neither the item's train reviews, "
        "the catalogue at large nor the evidence mention (-1 turns the noun check off)",
    )


class ValidationSettings(_Section):
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES, ge=1, description="Larger input messages are dead-lettered"
    )
    max_history: int = Field(
        DEFAULT_MAX_HISTORY, ge=0, description="Longest accepted `history` in a recommendation"
    )


class WorkerSettings(_Section):
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
    core_processes: int = Field(
        0,
        ge=0,
        le=64,
        description="Child processes that run the explain core (validate, enrich, chain, "
        "guard, JSON), so Kafka I/O in the worker process and explaining use separate cores; "
        "0 = the core runs on the worker's processing thread",
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
    metadata_max_age_ms: int = Field(
        10_000,
        ge=1000,
        description="Kafka metadata.max.age.ms: a worker that joined before its topic's "
        "metadata arrived (an empty assignment) or a topic that gained partitions is noticed "
        "and rebalanced within this time (kafka-python's default waits 5 minutes)",
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
        30.0,
        gt=0,
        description="How long one wait for the broker's acknowledgement lasts before the "
        "worker logs `produce_slow` and checks for shutdown; it keeps waiting while the "
        "producer retries (sending again would duplicate) and re-sends only what it gave up on",
    )
    produce_retry_backoff_ms: int = Field(200, ge=0, description="First produce-retry backoff")
    produce_retry_backoff_max_ms: int = Field(10_000, ge=0, description="Largest backoff")
    commit_interval_ms: int = Field(
        100,
        ge=0,
        description="At-least-once: the poll loop commits delivered offsets at most this often, "
        "sooner once max_buffered delivered events wait (0: whenever a batch was delivered). "
        "Each commit is a blocking round trip to the group coordinator; a longer interval "
        "costs fewer of them and explains more events again after a crash (at most "
        "max_buffered more). Rebalances and shutdown always commit",
    )
    linger_ms: int = Field(
        1,
        ge=0,
        description="Producer linger.ms: the worker sends a micro-batch's outputs at once and "
        "awaits them before the next batch goes out, so a longer linger only delays the batch",
    )
    producer_client: ProducerClient = Field(
        "auto",
        description="The output producer: auto (the default: librdkafka; kafka-python in "
        "exactly-once mode or for client/producer options only kafka-python takes), "
        "librdkafka (confluent-kafka: record batching and network I/O in C, off the worker's "
        "GIL; at-least-once only) or kafka-python; `producer_options` are the chosen client's",
    )
    transaction_timeout_ms: int = Field(
        60_000, ge=1000, description="Exactly-once mode: Kafka transaction.timeout.ms"
    )
    metrics_host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz, /readyz")
    metrics_port: int = Field(9400, ge=-1, description="HTTP port; 0 = any free port, -1 = off")
    lag_interval_s: float = Field(5.0, gt=0, description="How often consumer lag is measured")
    log_level: str = Field("INFO", description="DEBUG | INFO | WARNING | ERROR")
    log_format: str = Field("json", description="json | console")
    plugin_modules: StrList = Field(
        default_factory=list,
        description="Extra plugin modules to import and register (besides entry points)",
    )
    consumer_options: AnyMap = Field(
        default_factory=dict, description="Extra kafka-python consumer options"
    )
    producer_options: AnyMap = Field(
        default_factory=dict,
        description="Extra producer options of the chosen producer_client: librdkafka "
        "properties (at-least-once, the default) or kafka-python names (exactly-once, or "
        '`producer_client = "kafka-python"`)',
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
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="ignore", toml_file=None
    )

    paths: PathSettings = Field(default_factory=PathSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    experiments: ExperimentSettings = Field(default_factory=ExperimentSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)

    @model_validator(mode="after")
    def _producer_fits_delivery(self) -> Settings:
        if self.kafka.exactly_once and self.worker.producer_client == "librdkafka":
            raise ValueError(
                "worker.producer_client = 'librdkafka' is at-least-once only: exactly-once "
                "transactions need kafka-python's producer (kafka.exactly_once = true; "
                "'auto' picks it)"
            )
        return self

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
        config_file = config_file_in_use()
        if config_file:
            if not Path(config_file).is_file():
                raise BadSetting(f"config file {config_file} does not exist")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
            except tomllib.TOMLDecodeError as exc:
                raise BadSetting(f"config file {config_file} is not valid TOML: {exc}") from None
        return tuple(sources)


class BadSetting(ValueError):
    """A setting that cannot be used; the message is one line (field, given, accepted)."""


def config_file_in_use() -> str | None:
    """The TOML file settings are read from: load_settings(), then ``--config``, then env."""
    return _CONFIG_FILE.get() or _COMMAND_CONFIG.get() or os.environ.get("RECX_CONFIG")


def use_config_file(path: Path | str | None) -> None:
    """Make ``path`` the config file of this command (``--config``; None clears it)."""
    _COMMAND_CONFIG.set(str(path) if path is not None else None)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (else ``--config``/``RECX_CONFIG``), the environment and
    ``overrides``; raises :class:`BadSetting` with a one-line message for any bad value."""
    token = _CONFIG_FILE.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise BadSetting(describe_error(exc)) from None
    except _SourceError as exc:
        raise BadSetting(_describe_source_error(exc)) from None
    finally:
        _CONFIG_FILE.reset(token)


def settings_env(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{"kafka": {"input_topic": "x"}}`` -> ``{"RECX_KAFKA__INPUT_TOPIC": "x"}``: settings
    for a child process (lists and mappings as JSON). An unknown setting raises BadSetting."""
    env: dict[str, str] = {}
    for section, values in sections.items():
        info = Settings.model_fields.get(section)
        known = getattr(info.annotation, "model_fields", {}) if info is not None else {}
        for key, value in values.items():
            if key not in known:
                raise BadSetting(f"unknown setting {section}.{key} ({env_name((section, key))})")
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, list | tuple | dict):
                text = json.dumps(value, default=str)
            else:
                text = str(value)
            env[env_name((section, key))] = text
    return env


# -- one-line errors -----------------------------------------------------------------------------
_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a section of settings",
}


_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _bound(kind: str, ctx: dict[str, Any]) -> str | None:
    if kind not in _BOUNDS or not ctx:
        return None
    return f"a number {_BOUNDS[kind]} {next(iter(ctx.values()))}"


def _where(loc: tuple[str | int, ...]) -> str:
    """How a setting is given: its variable and, for a nested one, its TOML key."""
    if len(loc) < 2:
        return env_name(loc)
    return f"{env_name(loc)} or [{loc[0]}] {'.'.join(map(str, loc[1:]))}"


def env_name(loc: tuple[str | int, ...]) -> str:
    """``("chain", "explainers")`` -> ``RECX_CHAIN__EXPLAINERS``."""
    return ENV_PREFIX + ENV_NESTED.join(str(part).upper() for part in loc)


def _field_info(loc: tuple[str | int, ...]) -> tuple[Any, tuple[str | int, ...]]:
    """The FieldInfo the error's location points into, and the rest of the location."""
    model: Any = Settings
    info = None
    for depth, part in enumerate(loc):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return info, loc[depth:]
        info = fields[part]
        model = info.annotation
    return info, ()


def _example(loc: tuple[str | int, ...]) -> str:
    info, rest = _field_info(loc)
    if info is None:
        return ""
    if info.examples and not rest:
        return " or ".join(str(e) for e in info.examples)
    default = info.get_default(call_default_factory=True)
    for key in rest:
        default = default.get(key) if isinstance(default, dict) else None
    if isinstance(default, BaseModel) or default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return ",".join(map(str, default)) + " or " + json.dumps(default)
    if isinstance(default, dict):
        return json.dumps(default) if default else '{"key": "value"}'
    return str(default)


def describe_error(exc: ValidationError) -> str:
    """The first problem as one line; later ones are counted."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    name = ".".join(str(p) for p in loc) or "settings"
    given = first.get("input")
    kind = first["type"]
    if kind == "extra_forbidden":
        info_parent, _ = _field_info(loc[:-1])
        known = sorted(getattr(info_parent.annotation, "model_fields", {})) if info_parent else []
        text = f"unknown setting {name} ({_where(loc)})" + (
            f"; known in {'.'.join(map(str, loc[:-1]))}: {', '.join(known)}" if known else ""
        )
    else:
        expected = _EXPECTED.get(kind) or _bound(kind, first.get("ctx") or {})
        expected = expected or str(first["msg"]).removeprefix("Value error, ")
        example = _example(loc)
        shown = json.dumps(given, default=str) if not isinstance(given, dict) else "a mapping"
        text = f"invalid setting {name} ({_where(loc)}): got {shown}; expected {expected}" + (
            f", e.g. {example}" if example else ""
        )
    more = len(errors) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _describe_source_error(exc: _SourceError) -> str:
    """pydantic-settings could not decode a whole section given as one JSON value."""
    message = str(exc)
    field = message.split('"')[1] if message.count('"') >= 2 else "settings"
    return (
        f"invalid setting {field} ({env_name((field,))}): not a JSON object; set one value "
        f"at a time instead, e.g. {env_name((field, 'name'))}=value"
    )
