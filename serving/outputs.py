"""The model's outputs per task as the predictor answers them: V1 ``predictions``, V2 outputs and metadata.

Per the served version's spec (``spec.task``):

* binary: V1 ``predictions`` one probability per row; V2 ``probability`` FP32 ``[n]``.
* regression: V1 ``predictions`` one number per row (label units); V2 ``prediction`` FP32 ``[n]``.
* multiclass: V1 ``predictions`` one ``{"class": <class as the spec declares it>, "probabilities":
  {str(class): p, ...}}`` per row (the class of the highest probability; classes in the spec's order);
  V2 ``probabilities`` FP32 ``[n, K]`` (row-major, the spec's class order) and ``class`` ``[n]`` (BYTES for
  string classes, INT64 for integer ones).

V2 model metadata lists those outputs, and its ``parameters`` name the task (and, multiclass, the classes).
Values go out as the model computed them (float32; the prediction log holds the same numbers).
"""

from __future__ import annotations

import numpy as np

#: The V2 metadata of a binary model's one output (as it was before tasks).
BINARY_OUTPUTS = ({"name": "probability", "datatype": "FP32", "shape": [-1]},)


def task_of(spec) -> str:
    """The task name of a spec (``binary`` when it has none)."""
    task = getattr(spec, "task", None)
    return getattr(task, "value", "binary") if task is not None else "binary"


def class_datatype(spec) -> str:
    """The V2 datatype of a multiclass model's ``class`` output: ``INT64`` for integer classes, else
    ``BYTES``."""
    return "INT64" if isinstance(spec.classes[0], int) else "BYTES"


def outputs_metadata(spec) -> list[dict]:
    """The V2 model metadata ``outputs`` of a spec's task."""
    task = task_of(spec)
    if task == "regression":
        return [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]
    if task == "multiclass":
        return [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(spec.classes)]},
            {"name": "class", "datatype": class_datatype(spec), "shape": [-1]},
        ]
    return [dict(o) for o in BINARY_OUTPUTS]


def metadata_parameters(spec) -> dict:
    """What V2 metadata ``parameters`` add for a task: the classes of a multiclass spec (in order)."""
    if task_of(spec) == "multiclass":
        return {"classes": list(spec.classes)}
    return {}


def predicted_classes(spec, outputs: np.ndarray) -> list:
    """The class (as the spec declares it) of the highest probability of each row of ``[n, K]``."""
    classes = spec.classes
    return [classes[i] for i in np.argmax(outputs, axis=1).tolist()] if len(outputs) else []


def v1_predictions(spec, outputs: np.ndarray):
    """V1 ``predictions`` of one request's outputs (a float32 array, or the multiclass row objects)."""
    if task_of(spec) != "multiclass":
        return outputs
    names = [str(c) for c in spec.classes]
    # numpy float32 scalars: the response shows the float32 values the log holds.
    return [
        {"class": c, "probabilities": dict(zip(names, row, strict=True))}
        for c, row in zip(predicted_classes(spec, outputs), outputs, strict=True)
    ]


def v2_outputs(spec, outputs: np.ndarray) -> list[dict]:
    """V2 ``outputs`` (JSON) of one request's outputs."""
    task = task_of(spec)
    n = len(outputs)
    if task == "multiclass":
        return [
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [n, len(spec.classes)],
                "data": outputs.reshape(-1),
            },
            {
                "name": "class",
                "datatype": class_datatype(spec),
                "shape": [n],
                "data": predicted_classes(spec, outputs),
            },
        ]
    name = "prediction" if task == "regression" else "probability"
    return [{"name": name, "datatype": "FP32", "shape": [n], "data": outputs}]


def infer_outputs(spec, outputs: np.ndarray) -> list:
    """The same outputs as kserve ``InferOutput`` objects (kserve's own request path, gRPC)."""
    from kserve.protocol.infer_type import InferOutput

    out = []
    for o in v2_outputs(spec, outputs):
        io = InferOutput(name=o["name"], shape=o["shape"], datatype=o["datatype"])
        if o["datatype"] == "FP32":
            io.set_data_from_numpy(np.asarray(o["data"], dtype=np.float32).reshape(o["shape"]))
        elif o["datatype"] == "INT64":
            io.set_data_from_numpy(np.asarray(o["data"], dtype=np.int64))
        else:
            io.set_data_from_numpy(np.asarray(o["data"], dtype=object))
        out.append(io)
    return out
