"""Helpers for tests, demos and benchmarks: a scripted OpenAI-compatible server."""
