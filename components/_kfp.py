"""The one decorator every kfloop component uses.

``base_image`` is the CPU pipeline image (``pipelines/Dockerfile``, built from requirements/pipeline.lock),
which already holds kfp and kfloop: ``install_kfp_package=False`` stops KFP from running ``pip install kfp``
at the start of every task (clusters often cannot reach PyPI, and a second kfp would drift from the lock).
"""

import functools

from kfp import dsl

from kfloop.config import PIPELINE_IMAGE, TRAINING_IMAGE

component = functools.partial(dsl.component, base_image=PIPELINE_IMAGE, install_kfp_package=False)
#: The train step only: the GPU training image (``pipelines/Dockerfile``, target ``training``); every
#: other step runs the CPU pipeline image and never pulls CUDA.
gpu_component = functools.partial(dsl.component, base_image=TRAINING_IMAGE, install_kfp_package=False)
