"""Developer tools: a local Kafka, the demo, benchmarks. Not needed by a worker image."""
