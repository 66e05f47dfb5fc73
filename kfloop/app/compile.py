"""Compiles the kfloop pipelines to KFP IR YAML for a cluster (``kfloop compile``).

Every container image comes from one place: :mod:`kfloop.config` (``IMAGE_REGISTRY`` / ``IMAGE_TAG``),
optionally overridden by ``registry`` / ``tag`` here (CI passes the tag it just pushed). The compiled
images are also embedded wherever a step needs them at run time (the deploy step's predictor image), so a
rollout runs the code the running pipeline was compiled with, never kfloop.config's defaults; a retrain runs
the training pipeline compiled here (the monitoring pipeline's ``training_pipeline``: this package, or its
uploaded version). One compiled pipeline serves every dataset: the dataset spec is a run parameter. The pipeline
root (``gs://bucket/prefix``) is a compile-time default that ``kfloop submit --pipeline-root`` can
override per run. Each written file is loaded back with kfp's own loader before it replaces anything.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import tempfile
from pathlib import Path

from kfloop import config

#: Pipeline name → module with ``create_pipeline()``; compiled to ``<name>.yaml``.
PIPELINES: dict[str, str] = {
    "training": "pipelines.training",
    "monitoring": "pipelines.monitoring",
    "batch_prediction": "pipelines.batch_prediction",
}
#: Object stores a KFP cluster can use as pipeline root.
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://", "minio://")

_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class CompileError(ValueError):
    """A pipeline cannot be compiled as asked (names the pipeline, option or executor)."""


@dataclasses.dataclass(frozen=True)
class Images:
    """The three container images of the loop.

    Attributes:
        pipeline: CPU image of every pipeline step but training (``pipelines/Dockerfile``, target
            ``pipeline``).
        training: GPU image of the train step (``pipelines/Dockerfile``, target ``training`` on the
            TensorFlow GPU base).
        serving: KServe predictor image (``serving/Dockerfile``).
    """

    pipeline: str
    training: str
    serving: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Images:
        """From :meth:`as_dict` output; every image must be a non-empty string.

        Raises:
            CompileError: a missing or empty image.
        """
        missing = [
            f.name for f in dataclasses.fields(cls) if not isinstance(d.get(f.name), str) or not d[f.name]
        ]
        if missing:
            raise CompileError(f"images: {', '.join(missing)} missing (got {sorted(d)})")
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def default_mapping(imgs: Images) -> dict[str, str]:
    """kfloop.config's default image → the compiled one."""
    return {
        config.PIPELINE_IMAGE: imgs.pipeline,
        config.TRAINING_IMAGE: imgs.training,
        config.SERVING_IMAGE: imgs.serving,
    }


def _repository(image: str) -> str:
    """``kfloop-pipeline`` from ``<IMAGE_REGISTRY>/kfloop-pipeline:<IMAGE_TAG>``."""
    prefix, suffix = f"{config.IMAGE_REGISTRY}/", f":{config.IMAGE_TAG}"
    if not (image.startswith(prefix) and image.endswith(suffix)):
        raise CompileError(f"kfloop.config image {image!r} is not {prefix}<name>{suffix}")
    return image[len(prefix) : -len(suffix)]


_DIGEST_REF = re.compile(r"^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?@sha256:[0-9a-f]{64}$")


def images(
    registry: str | None = None, tag: str | None = None, digests: dict[str, str] | None = None
) -> Images:
    """The images for ``registry`` / ``tag`` (defaults: ``kfloop.config.IMAGE_REGISTRY`` / ``IMAGE_TAG``),
    each optionally pinned by digest instead (``digests``: ``{"pipeline": "repo@sha256:<hex>", ...}``).

    Raises:
        CompileError: ``registry`` or ``tag`` is not a valid image reference part, or a digest reference
            is not ``<repository>@sha256:<64 hex>`` for a known image role.
    """
    imgs = _tagged(registry, tag)
    pinned = {}
    for role, ref in (digests or {}).items():
        if role not in imgs.as_dict():
            raise CompileError(f"image {role!r}: not one of {sorted(imgs.as_dict())}")
        if not _DIGEST_REF.match(ref):
            raise CompileError(f"image {role}={ref!r}: expected <repository>@sha256:<64 hex digits>")
        pinned[role] = ref
    return Images.from_dict({**imgs.as_dict(), **pinned})


def _tagged(registry: str | None, tag: str | None) -> Images:
    registry = config.IMAGE_REGISTRY if registry is None else registry.rstrip("/")
    tag = config.IMAGE_TAG if tag is None else tag
    if not _REGISTRY.match(registry):
        raise CompileError(f"registry: {registry!r} is not an image registry path (e.g. ghcr.io/org)")
    if not _TAG.match(tag):
        raise CompileError(f"tag: {tag!r} is not an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]*, max 128)")
    return Images(
        pipeline=f"{registry}/{_repository(config.PIPELINE_IMAGE)}:{tag}",
        training=f"{registry}/{_repository(config.TRAINING_IMAGE)}:{tag}",
        serving=f"{registry}/{_repository(config.SERVING_IMAGE)}:{tag}",
    )


def check_pipeline_root(pipeline_root: str) -> str:
    """Returns ``pipeline_root`` if a cluster can use it (``gs://``, ``s3://``, ``minio://`` with a bucket).

    Raises:
        CompileError: a local path or a URI without a bucket.
    """
    if not pipeline_root.startswith(PIPELINE_ROOT_SCHEMES) or not pipeline_root.split("://", 1)[1].strip("/"):
        raise CompileError(
            f"pipeline_root: {pipeline_root!r} is not an object-store URI "
            f"({', '.join(s + 'bucket/prefix' for s in PIPELINE_ROOT_SCHEMES)})"
        )
    return pipeline_root.rstrip("/")


def pipeline_func(name: str):
    """The ``@dsl.pipeline`` function of pipeline ``name`` (a key of :data:`PIPELINES`).

    Raises:
        CompileError: unknown name, or its module / ``create_pipeline`` is missing.
    """
    if name not in PIPELINES:
        raise CompileError(f"pipeline: {name!r} is not one of {sorted(PIPELINES)}")
    module_name = PIPELINES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise CompileError(f"pipeline {name!r}: module {module_name} does not exist") from None
        raise
    create = getattr(module, "create_pipeline", None)
    if create is None:
        raise CompileError(f"pipeline {name!r}: {module_name} has no create_pipeline()")
    return create()


def _replace_strings(node, mapping: dict[str, str]):
    if isinstance(node, dict):
        return {k: _replace_strings(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_strings(v, mapping) for v in node]
    if isinstance(node, str):
        return mapping.get(node, node)
    return node


def _retarget(spec_dict: dict, name: str, imgs: Images) -> dict:
    """Points every executor at ``imgs`` and replaces every embedded default image (task constants such
    as the deploy step's predictor image); any executor image not from kfloop.config is an error."""
    mapping = default_mapping(imgs)
    executors = spec_dict.get("deploymentSpec", {}).get("executors", {})
    for label, executor in sorted(executors.items()):
        container = executor.get("container")
        if container is None:  # importer / resolver executors run no image of ours
            continue
        image = container.get("image")
        if image not in mapping:
            raise CompileError(
                f"pipeline {name!r}: executor {label} uses image {image!r}, not one of kfloop.config's "
                f"{sorted(mapping)} (use components._kfp.component / gpu_component)"
            )
    return _replace_strings(spec_dict, mapping)


def _write(func, path: Path, name: str, imgs: Images, pipeline_root: str | None) -> None:
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec_dict = _retarget(json_format.MessageToDict(func.pipeline_spec), name, imgs)
    if pipeline_root is not None:
        spec_dict["defaultPipelineRoot"] = pipeline_root
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())
    pipeline_spec_builder.write_pipeline_spec_to_file(
        pipeline_spec=spec,
        pipeline_description=func.description,
        platform_spec=func.platform_spec,
        package_path=str(path),
    )


def load_ir(path: str | os.PathLike) -> tuple[dict, dict]:
    """Reads a compiled pipeline: ``(pipeline_spec, platform_spec)`` as dicts (platform ``{}`` if none)."""
    import yaml

    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if not docs:
        raise CompileError(f"{path}: empty pipeline file")
    platform: dict = {}
    for doc in docs[1:]:
        platform.update(doc)
    return docs[0], platform


def verify(path: str | os.PathLike, imgs: Images | None = None):
    """Loads ``path`` back with kfp's own loader and checks its images.

    Returns:
        The loaded ``YamlComponent``.

    Raises:
        CompileError: kfp cannot load it, or an executor image is not one of ``imgs``.
    """
    from kfp import components

    try:
        component = components.load_component_from_file(str(path))
    except Exception as e:  # kfp raises ValueError / KeyError / ParseError on a bad spec
        raise CompileError(f"{path}: kfp cannot load it back: {type(e).__name__}: {e}") from e
    if imgs is not None:
        spec, _ = load_ir(path)
        allowed = set(imgs.as_dict().values())
        for label, executor in spec.get("deploymentSpec", {}).get("executors", {}).items():
            image = executor.get("container", {}).get("image")
            if image is not None and image not in allowed:
                raise CompileError(f"{path}: executor {label} has image {image!r}, expected one of {allowed}")
    return component


def compile_all(
    output_dir: str | os.PathLike,
    *,
    registry: str | None = None,
    tag: str | None = None,
    pipeline_root: str | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    imgs: Images | None = None,
    digests: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Compiles pipelines to ``<output_dir>/<name>.yaml`` (default: training and monitoring).

    All files are first written and verified next to their targets, then moved into place, so a failure
    leaves no half-written or mixed set of files.

    Args:
        output_dir: Directory for the YAML files (created if missing).
        registry: Image registry, default ``kfloop.config.IMAGE_REGISTRY``.
        tag: Image tag, default ``kfloop.config.IMAGE_TAG``.
        pipeline_root: Default pipeline root of the runs (``gs://bucket/prefix``); ``None``: the cluster's.
        names: Pipelines to compile (keys of :data:`PIPELINES`).
        imgs: Exact images; overrides ``registry`` / ``tag``.
        digests: Images pinned by digest (see :func:`images`).

    Returns:
        ``{name: path}`` of the written files.

    Raises:
        CompileError: a bad option, a missing pipeline, an image not from kfloop.config, or an output
            kfp cannot load back.
    """
    imgs = imgs or images(registry, tag, digests)
    if pipeline_root is not None:
        pipeline_root = check_pipeline_root(pipeline_root)
    names = list(PIPELINES) if names is None else list(names)
    funcs = {name: pipeline_func(name) for name in names}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name, func in funcs.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".yaml", dir=out)
            os.close(fd)
            os.chmod(tmp, 0o644)
            staged[name] = Path(tmp)
            _write(func, staged[name], name, imgs, pipeline_root)
            verify(staged[name], imgs)
        written = {}
        for name, tmp in staged.items():
            written[name] = out / f"{name}.yaml"
            os.replace(tmp, written[name])
        return written
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
