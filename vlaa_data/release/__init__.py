"""Releases: export, dataset card, Hub push."""
