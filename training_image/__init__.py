"""The trainer module of the kfloop training image (``python -m training_image.trainer``; the image is
``pipelines/Dockerfile``, target ``training``)."""
