"""The kfloop training image: the trainer module (``python -m training_image.trainer``) and its Dockerfile."""
