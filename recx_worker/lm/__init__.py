"""Language-model loading and batched generation."""
