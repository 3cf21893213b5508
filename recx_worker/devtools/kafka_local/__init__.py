"""A local Apache Kafka (KRaft) owned by recx: jars, storage, processes."""

from recx_worker.devtools.kafka_local.cluster import LocalKafka
from recx_worker.devtools.kafka_local.jars import KafkaSetupError, resolve_runtime

__all__ = ["KafkaSetupError", "LocalKafka", "resolve_runtime"]
