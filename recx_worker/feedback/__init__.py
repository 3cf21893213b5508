"""Feedback on explanations: arm assignment, the aggregation store, its consumer, the statistics."""
