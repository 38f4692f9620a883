"""The verifiers and GRPO rewards."""
