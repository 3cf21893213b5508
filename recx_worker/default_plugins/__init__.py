"""Built-in explainers, registered through the same entry points as third-party plugins."""
