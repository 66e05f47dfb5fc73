"""kfloop's KServe predictor (serving env: kserve 0.21, TF 2.21).

``python -m serving`` (or ``kfloop serve``) serves the trainer's ``predict_raw`` SavedModel signature over
KServe V1 and the Open Inference Protocol v2, from the model store (``champion`` alias, hot reload) or a
SavedModel directory. Modules: :mod:`serving.model` (the ``kserve.Model``, loading, hot reload,
micro-batching), :mod:`serving.http` (fast HTTP path, body limits), :mod:`serving.request` (request
validation against :mod:`kfloop.features`), :mod:`serving.log_queue` (prediction log), :mod:`serving.demo_model`
(a small model with the trainer's signatures, for tests and benchmarks).

Nothing heavy is imported here: ``import serving`` works in both envs.
"""
