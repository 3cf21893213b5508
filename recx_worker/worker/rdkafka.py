"""The worker's producer on librdkafka (``worker.producer_client``: the default for at-least-once).

kafka-python's producer builds record batches and talks to the broker in Python: with
explanation-sized outputs it is the largest part of the worker process's CPU (docs/results.md,
"Third pass"). confluent-kafka's producer does the same work in C threads. This wraps it in the
part of kafka-python's producer interface the ``Checkpoint`` uses (``send`` returning a future
with ``get(timeout)`` and ``is_done``, ``flush``, ``close``), so delivery is unchanged: every
output is awaited (``acks=all``, idempotent), failed sends raise kafka-python errors, and the
checkpoint alone decides when offsets are committed. At-least-once only: exactly-once
transactions need the consumer's group metadata, which only kafka-python's producer takes.

Delivery reports arrive through ``poll``; the thread that waits on a future polls, so no
thread of ours is needed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from recx_worker.worker.checkpoint import FatalDeliveryError

log = logging.getLogger("recx.rdkafka")

#: kafka-python option -> librdkafka property: the connection, security and timing options
#: recx sets or a deployment puts in ``kafka.client_options`` (mutual TLS, Kerberos, ...).
_PROPERTIES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "client_id": "client.id",
    "linger_ms": "linger.ms",
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
    "request_timeout_ms": "request.timeout.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
}
#: kafka-python options librdkafka does without: it negotiates protocol versions itself.
_NOT_NEEDED = frozenset({"api_version", "api_version_auto_timeout_ms"})


def untranslatable(options: dict[str, Any]) -> list[str]:
    """The kafka-python names in ``options`` that librdkafka has no property for."""
    known = {"bootstrap_servers", "ssl_check_hostname", *_PROPERTIES, *_NOT_NEEDED}
    return [key for key in options if key not in known and "." not in key]


def rdkafka_config(options: dict[str, Any]) -> dict[str, Any]:
    """librdkafka properties for kafka-python style ``options`` (``bootstrap_servers`` as a
    list or string; the others by ``_PROPERTIES``; a name with a dot passes as it is). An
    option neither knows is refused, so no setting (a client certificate...) is silently
    dropped."""
    if unknown := untranslatable(options):
        raise ValueError(
            f"producer option {unknown[0]!r} has no librdkafka equivalent here; give the "
            "librdkafka property name (e.g. 'batch.size') in worker.producer_options, or set "
            'worker.producer_client = "kafka-python"'
        )
    # keys land on the partitions kafka-python and Java clients pick (murmur2), not
    # librdkafka's default (CRC32): a user's explanations stay in one partition either way
    config: dict[str, Any] = {"partitioner": "murmur2_random"}
    for key, value in options.items():
        if key == "bootstrap_servers":
            config["bootstrap.servers"] = value if isinstance(value, str) else ",".join(value)
        elif key == "ssl_check_hostname":
            config["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif key in _PROPERTIES:
            config[_PROPERTIES[key]] = value
        elif key not in _NOT_NEEDED:
            config[key] = value  # a librdkafka property already
    return config


class DeliveryFuture:
    """The outcome of one ``send``: ``get`` waits for the broker's acknowledgement."""

    __slots__ = ("_done", "_error", "_producer")

    def __init__(self, producer: RdKafkaProducer) -> None:
        self._producer = producer
        self._error: KafkaError | FatalDeliveryError | None = None
        self._done = False

    @property
    def is_done(self) -> bool:
        return self._done

    def _report(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._error = _kafka_error(error)
        self._done = True

    def get(self, timeout: float | None = None) -> None:
        """Return once acknowledged; raise the producer's error if it gave up, or
        ``KafkaTimeoutError`` if ``timeout`` seconds pass first (it keeps trying)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise KafkaTimeoutError(f"no acknowledgement within {timeout} s")
            self._producer.poll(min(left, 1.0))
        if self._error is not None:
            raise self._error


class RdKafkaProducer:
    """confluent-kafka's ``Producer`` behind kafka-python's ``send``/``flush``/``close``."""

    def __init__(self, **options: Any) -> None:
        from confluent_kafka import Producer

        # librdkafka's own log lines (connection failures, retries) go through Python logging,
        # so they come out in the worker's log format instead of raw on stderr
        self._producer = Producer(rdkafka_config(options), logger=log)

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Any = None,  # [(name, bytes)], as kafka-python takes them
    ) -> DeliveryFuture:
        future = DeliveryFuture(self)
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=future._report
                )
                return future
            except BufferError:  # the local queue is full: serve delivery reports, retry
                self.poll(0.1)
            except Exception as exc:  # confluent_kafka.KafkaException: bad topic, fatal state
                raise _kafka_error(exc.args[0] if exc.args else exc) from exc

    def poll(self, timeout: float) -> None:
        """Serve delivery reports (and log lines) for up to ``timeout`` seconds."""
        self._producer.poll(timeout)

    def flush(self, timeout: float | None = None) -> None:
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            raise KafkaTimeoutError(f"{left} records not delivered within {timeout} s")

    def close(self, timeout: float | None = None) -> None:
        self._producer.flush(30 if timeout is None else timeout)


def _kafka_error(error: Any) -> KafkaError | FatalDeliveryError:
    """A kafka-python error for a librdkafka one: authorization failures stay fatal for the
    checkpoint, and a fatal producer state (the idempotent producer cannot go on) stops the
    worker, as a fenced kafka-python producer does."""
    from confluent_kafka import KafkaError as RdError

    text = str(error.str()) if hasattr(error, "str") else str(error)
    code = error.code() if hasattr(error, "code") else None
    if code == RdError.TOPIC_AUTHORIZATION_FAILED:
        return TopicAuthorizationFailedError(text)
    if code == RdError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return TransactionalIdAuthorizationFailedError(text)
    if hasattr(error, "fatal") and error.fatal():
        return FatalDeliveryError(f"the librdkafka producer failed for good: {text}")
    return KafkaError(text)
