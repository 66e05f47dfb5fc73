"""The New York City flights example (2013, a regression: the arrival delay in minutes): spec and CSV fetch."""
