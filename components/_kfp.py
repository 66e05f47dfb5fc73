"""The one decorator every kfloop component uses.

``base_image`` is the pipeline image (``training_image/Dockerfile``, built from requirements/pipeline.lock),
which already holds kfp and kfloop: ``install_kfp_package=False`` stops KFP from running ``pip install kfp``
at the start of every task (clusters often cannot reach PyPI, and a second kfp would drift from the lock).
"""

import functools

from kfp import dsl

from kfloop.config import PIPELINE_IMAGE

component = functools.partial(dsl.component, base_image=PIPELINE_IMAGE, install_kfp_package=False)
