"""Example kfloop projects (dataset specs and their data descriptions)."""
