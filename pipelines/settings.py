"""Cluster settings of pipeline tasks: caching, retries, resources, GPU placement.

Each pipeline calls :func:`configure` on every task it creates (and :func:`configure_gpu` on the train
task). The settings land in the compiled KFP IR (``kfloop compile``) and take effect on a cluster;
``kfp.local`` ignores them, so the same pipeline function runs unchanged locally.

Example::

    ingest = ingest_op(...)
    settings.configure(ingest, network_io=True, deterministic=True, cpu="1", memory="2Gi")
    train = train_op(...)
    settings.configure(train, network_io=False, deterministic=True, cpu="2", memory="8Gi")
    settings.configure_gpu(train)

Caching: a task is cached when it is deterministic (same inputs give the same outputs). Steps that read
"now" (monitoring windows, "latest champion", cooldown checks) or a mutable store must pass
``deterministic=False`` or a cached result would be replayed forever.
"""

import re

from kfp import dsl

from kfloop.config import ClusterConfig, GpuConfig

_CPU = re.compile(r"^([0-9]*[.])?[0-9]+m?$")
_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_MEMORY_UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def cpu_cores(cpu: str) -> float:
    """CPU quantity (``"500m"``, ``"2"``, ``"1.5"``) in cores.

    Raises:
        ValueError: not a Kubernetes CPU quantity.
    """
    if not isinstance(cpu, str) or not _CPU.match(cpu):
        raise ValueError(f"cpu: {cpu!r} is not a CPU quantity (e.g. '500m', '2', '1.5')")
    return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def memory_bytes(memory: str) -> int:
    """Memory quantity (``"512Mi"``, ``"2Gi"``, ``"1G"``) in bytes.

    Raises:
        ValueError: not a Kubernetes memory quantity (as KFP accepts it).
    """
    m = _MEMORY.match(memory) if isinstance(memory, str) else None
    if not m:
        raise ValueError(f"memory: {memory!r} is not a memory quantity (e.g. '512Mi', '2Gi')")
    return int(memory[: len(memory) - len(m.group(1) or "")]) * _MEMORY_UNITS[m.group(1) or ""]


def _cpu_string(cores: float) -> str:
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def configure(
    task: dsl.PipelineTask,
    *,
    network_io: bool,
    deterministic: bool,
    cpu: str,
    memory: str,
    cpu_limit: str | None = None,
    memory_limit: str | None = None,
    display_name: str | None = None,
    cluster: ClusterConfig = ClusterConfig(),
) -> dsl.PipelineTask:
    """Sets caching, retries and resources of one task (all inert under kfp.local).

    Args:
        task: The task, as returned by calling a component inside a ``@dsl.pipeline``.
        network_io: The task talks to the network (GCS, the model store, an API): retried with
            exponential backoff (``cluster.num_retries``, ``backoff_*``). Other tasks are not retried: a
            deterministic local failure would only fail again.
        deterministic: Same inputs give the same outputs: caching on. ``False`` for steps that read
            "now" or mutable state (monitoring windows, aliases): caching off.
        cpu: CPU request (``"500m"``, ``"2"``).
        memory: Memory request (``"512Mi"``, ``"4Gi"``).
        cpu_limit: CPU limit; default request x ``cluster.cpu_limit_factor`` (none when the factor is 0).
        memory_limit: Memory limit; default the request (memory is not compressible: a pod that grows
            beyond what it asked for is the one to be OOM-killed, not its neighbours).
        display_name: Task name shown in the KFP UI (left as is when ``None``).
        cluster: Retry / limit knobs from :mod:`kfloop.config`.

    Returns:
        The same task, for chaining.

    Raises:
        ValueError: a quantity is malformed or a limit is below its request (names the argument).
    """
    cores = cpu_cores(cpu)
    mem = memory_bytes(memory)
    if cpu_limit is None and cluster.cpu_limit_factor > 0:
        cpu_limit = _cpu_string(cores * cluster.cpu_limit_factor)
    if memory_limit is None:
        memory_limit = memory
    if cpu_limit is not None and cpu_cores(cpu_limit) < cores:
        raise ValueError(f"cpu_limit: {cpu_limit!r} is below the cpu request {cpu!r}")
    if memory_bytes(memory_limit) < mem:
        raise ValueError(f"memory_limit: {memory_limit!r} is below the memory request {memory!r}")

    task.set_caching_options(enable_caching=bool(deterministic))
    if network_io:
        task.set_retry(
            num_retries=cluster.num_retries,
            backoff_duration=cluster.backoff_duration,
            backoff_factor=cluster.backoff_factor,
            backoff_max_duration=cluster.backoff_max_duration,
        )
    task.set_cpu_request(cpu)
    task.set_memory_request(memory)
    if cpu_limit is not None:
        task.set_cpu_limit(cpu_limit)
    task.set_memory_limit(memory_limit)
    if display_name is not None:
        task.set_display_name(display_name)
    if cluster.image_pull_secret:  # private registry: the Secret lives in the runs' namespace
        from kfp import kubernetes

        kubernetes.set_image_pull_secrets(task, [cluster.image_pull_secret])
    return task


def configure_gpu(
    task: dsl.PipelineTask,
    gpu: GpuConfig = GpuConfig(),
    cluster: ClusterConfig = ClusterConfig(),
) -> dsl.PipelineTask:
    """Puts a task on the GPU node pool: accelerator limit, node selector, toleration, requests.

    Call it on the train task only, after :func:`configure` (it raises the CPU / memory requests to
    ``gpu.cpu_request`` / ``gpu.memory_request`` where those are larger, and retries the task
    ``cluster.train_retries`` times: a preempted node resumes from the checkpoint). Under kfp.local it is inert
    and the trainer uses whatever device the machine has.

    Args:
        task: The train task.
        gpu: Accelerator type / count, node-pool label and taint, requests.
        cluster: ``gpu_resource`` is the Kubernetes resource name the accelerator count is asked as.

    Returns:
        The same task, for chaining.
    """
    from kfp import kubernetes

    res = task.container_spec.resources if task.container_spec is not None else None
    cpu = gpu.cpu_request
    memory = gpu.memory_request
    if res is not None and res.cpu_request and cpu_cores(res.cpu_request) > cpu_cores(cpu):
        cpu = res.cpu_request
    if res is not None and res.memory_request and memory_bytes(res.memory_request) > memory_bytes(memory):
        memory = res.memory_request
    task.set_cpu_request(cpu)
    task.set_memory_request(memory)
    if res is not None and res.cpu_limit and cpu_cores(res.cpu_limit) < cpu_cores(cpu):
        task.set_cpu_limit(cpu)
    if res is not None and res.memory_limit and memory_bytes(res.memory_limit) < memory_bytes(memory):
        task.set_memory_limit(memory)
    # A preempted Spot GPU node fails the pod: retry, and the trainer resumes from its BackupAndRestore
    # checkpoint next to the model artifact under the pipeline root (components/train).
    task.set_retry(
        num_retries=cluster.train_retries,
        backoff_duration=cluster.backoff_duration,
        backoff_factor=cluster.backoff_factor,
        backoff_max_duration=cluster.backoff_max_duration,
    )
    # The KFP backend turns the accelerator type into the container's resource-limit name, so it must
    # be the device-plugin resource (nvidia.com/gpu); the GPU model is chosen by the node selector.
    task.set_accelerator_type(cluster.gpu_resource)
    task.set_accelerator_limit(gpu.accelerator_count)
    kubernetes.add_node_selector(task, label_key=gpu.node_selector_key, label_value=gpu.accelerator_type)
    kubernetes.add_toleration(task, key=gpu.toleration_key, operator="Exists", effect="NoSchedule")
    return task


def kfp_api_access(task: dsl.PipelineTask, cluster: ClusterConfig = ClusterConfig()) -> dsl.PipelineTask:
    """Marks a task that calls the KFP API (the retrain trigger) for Kubeflow's ``access-ml-pipeline``
    PodDefault, which mounts a projected service-account token for audience ``pipelines.kubeflow.org``.
    Without that PodDefault the trigger asks the TokenRequest API for the same token (see
    :func:`components.trigger.trigger.kfp_token`). Inert under kfp.local.
    """
    from kfp import kubernetes

    kubernetes.add_pod_label(task, label_key=cluster.kfp_access_label, label_value="true")
    return task


def notify_access(task: dsl.PipelineTask, cluster: ClusterConfig = ClusterConfig()) -> dsl.PipelineTask:
    """Mounts the notification config Secret (``cluster.notify_secret``, optional: a cluster without it
    sends no notifications) at ``cluster.notify_mount`` on a task that sends events: the channels' URLs and
    tokens stay in the Secret, never in a pipeline parameter. Inert under kfp.local.
    """
    from kfp import kubernetes

    kubernetes.use_secret_as_volume(
        task, secret_name=cluster.notify_secret, mount_path=cluster.notify_mount, optional=True
    )
    return task
