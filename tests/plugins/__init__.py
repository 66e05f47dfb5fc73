"""Shared pytest fixtures, one module per area (registered in tests/conftest.py)."""
