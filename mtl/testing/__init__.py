"""Utilities for tests and examples (small in-memory datasets)."""
