"""The client layer shared by every LLM step: presets, requests, backends, cache keys."""
