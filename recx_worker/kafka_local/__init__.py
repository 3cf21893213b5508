"""A local Apache Kafka (KRaft) owned by recx: jars, storage, processes."""
