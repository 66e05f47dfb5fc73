"""The Minneapolis police stops example (2017): spec and CSV fetch."""
