"""Offline ML: review data to explanation data (``data``), LoRA fine-tuning (``lora``) and
explanation-quality evaluation (``evaluation``). The serving runtime never imports it."""
