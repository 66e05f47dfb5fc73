"""Train: the taxi model on the ingest splits (KFP component over :mod:`training_image.trainer`)."""
