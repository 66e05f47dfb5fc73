"""Train: the spec's model on the ingest splits (KFP component over :mod:`training_image.trainer`)."""
