"""recx: natural-language explanations for recommendations, served from Kafka."""

__version__ = "0.1.0"
