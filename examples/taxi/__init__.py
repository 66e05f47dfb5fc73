"""The Chicago taxi example: ``spec.yaml`` describes the taxi data kfloop ships with."""
