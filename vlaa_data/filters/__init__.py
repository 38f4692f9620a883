"""Filters that score samples (aha moments, perplexity) without changing them."""
