"""The streaming worker: consume, validate, enrich, explain, publish, checkpoint."""
