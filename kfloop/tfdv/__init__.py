"""TFDV operations: statistics, schema, validation, reports."""
