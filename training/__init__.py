"""LoRA fine-tuning of the language-model explainer."""
