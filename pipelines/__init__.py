"""KFP pipelines: one ``create_pipeline(...)`` per module."""
