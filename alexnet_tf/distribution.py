"""Creates the `tf.distribute` strategy, finds the chief worker and splits the global batch.

Strategies, by name:
- `mirrored`: one replica per local GPU (`--num_gpus` of them), else one per
  logical CPU device (see `split_cpu`), else the CPU alone.
- `multi_worker_mirrored`: the same on every machine of a cluster that the
  `TF_CONFIG` environment variable describes; gradients are all-reduced
  across machines.
- `one_device`: the first GPU, else the CPU.
- `tpu`: a Cloud TPU, found by `TPUClusterResolver`.
- `default`: TensorFlow's default strategy, which places nothing explicitly.
"""

import contextlib
import itertools
import json
import os
import shutil
import tempfile

from absl import logging
import tensorflow as tf

MIRRORED = "mirrored"
MULTI_WORKER_MIRRORED = "multi_worker_mirrored"
ONE_DEVICE = "one_device"
TPU = "tpu"
DEFAULT = "default"
STRATEGIES = (MIRRORED, MULTI_WORKER_MIRRORED, ONE_DEVICE, TPU, DEFAULT)

_TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` accepts what Keras 3 passes it.

    `keras.Model.fit` and `evaluate` (Keras 3.15) call `strategy.reduce` with a
    whole (images, labels) batch, to learn its shapes, and with
    `axis=0` on scalar metrics. `MirroredStrategy` tolerates both; the
    multi-worker strategy fails on them. This reduces each tensor of a nested
    structure in turn, and reduces a scalar across replicas only. Both calls
    stay collective, so every worker still takes part in each one.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def reduce_one(per_replica):
            rank = self.experimental_local_results(per_replica)[0].shape.rank
            return parent.reduce(reduce_op, per_replica, axis if rank else None)

        return tf.nest.map_structure(reduce_one, value)


class _MirroredStrategy(tf.distribute.MirroredStrategy):
    """`MirroredStrategy` whose collective keys start in a range of their own.

    TensorFlow 2.21 numbers the collective all-reduces of every
    `MirroredStrategy` from the same start, and caches each number's tensor
    shape process-wide. A second strategy in the same process, training a
    model of another size (a notebook, a test suite), then fails with "Shape
    mismatch in the collective instance". Each instance here starts its
    numbers in a range of its own.
    """

    _KEYS_PER_INSTANCE = 100_000
    _instances = itertools.count(1)

    def __init__(self, devices):
        # MirroredStrategy's constructor reads this attribute to start its keys.
        self._collective_key_base = next(self._instances) * self._KEYS_PER_INSTANCE
        super().__init__(devices)


def mirrored_strategy(devices):
    """Returns a `MirroredStrategy` over `devices` (names such as "/gpu:0")."""
    return _MirroredStrategy(list(devices))


def split_cpu(num_devices):
    """Splits the CPU into `num_devices` logical devices, one replica each.

    `mirrored` then trains on them as if they were GPUs, which shows on a
    machine without GPUs how a run behaves with several replicas. It does not
    make training faster: the devices share the same cores.

    Must be called before TensorFlow first uses a device.

    Raises:
        ValueError: if `num_devices` is below 1, or TensorFlow already started.
    """
    if num_devices < 1:
        raise ValueError(f"Expected at least 1 CPU device. Received: {num_devices}")
    if num_devices == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices
        )
    except RuntimeError:
        raise ValueError(
            f"Cannot split the CPU into {num_devices} devices: TensorFlow has "
            "already started using it. Split it before building any model or dataset."
        ) from None


def _use_gpus(num_gpus):
    """Makes only the first `num_gpus` GPUs visible.

    Only physical devices are listed here: listing logical ones starts
    TensorFlow's runtime, after which a multi-worker strategy can no longer
    be created.

    Args:
        num_gpus: GPUs to use; None for all.

    Raises:
        ValueError: if the machine has fewer GPUs, or TensorFlow already started.
    """
    physical = tf.config.list_physical_devices("GPU")
    if num_gpus is None:
        return
    if num_gpus > len(physical):
        fix = "or less" if physical else "to train on the CPU"
        raise ValueError(
            f"--num_gpus={num_gpus}, but TensorFlow sees {len(physical)} GPU(s) here. "
            f"Pass --num_gpus={len(physical)} {fix}, or check the GPU driver and CUDA "
            "install with `nvidia-smi`."
        )
    try:
        tf.config.set_visible_devices(physical[:num_gpus], "GPU")
    except RuntimeError:
        raise ValueError(
            "Cannot choose the GPUs: TensorFlow has already started using them. "
            "Create the strategy before building any model or dataset."
        ) from None


def read_tf_config():
    """Returns the cluster description in `TF_CONFIG`, checked.

    Returns:
        The parsed dict, with `cluster` (job names to lists of "host:port")
        and `task` (`type` and `index` of this process).

    Raises:
        ValueError: if `TF_CONFIG` is unset, not JSON, or names a task that
            the cluster does not have.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(
            f"--distribution_strategy={MULTI_WORKER_MIRRORED} reads the cluster from the "
            "TF_CONFIG environment variable, which is not set. Set it on every "
            f"machine, changing only the task index, for example: TF_CONFIG='{_TF_CONFIG_EXAMPLE}'"
        )
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"TF_CONFIG is not a cluster description: {text!r}. Expected JSON such "
            f"as '{_TF_CONFIG_EXAMPLE}'."
        ) from None

    addresses = cluster.get(task_type) if isinstance(cluster, dict) else None
    if not isinstance(addresses, list) or not 0 <= task_index < len(addresses):
        raise ValueError(
            f"TF_CONFIG names task {task_type!r} {task_index}, which its cluster "
            f"{cluster!r} does not have. Set task.type to one of the cluster's jobs "
            "and task.index to this machine's position in that job's list."
        )
    return tf_config


def _create_tpu_strategy(tpu_address):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(
            f"No TPU at --tpu={tpu_address!r}: {str(error).splitlines()[0]}. Pass the "
            "TPU's name or "
            "grpc:// address, or 'local' on a TPU VM, or choose another "
            "--distribution_strategy."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def create_strategy(name=MIRRORED, num_gpus=None, tpu_address="local", num_cpu_devices=1):
    """Creates the distribution strategy for this machine or cluster.

    Args:
        name: an entry of `STRATEGIES`, see the module docstring.
        num_gpus: local GPUs to use (None: all, 0: none). For `mirrored` and
            `multi_worker_mirrored`, the replicas per machine.
        tpu_address: `tpu` only: the TPU's name or grpc:// address, or
            "local" for the TPU VM this runs on.
        num_cpu_devices: `mirrored` only: logical CPU devices to split the
            CPU into, see `split_cpu`.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown name, more GPUs than the machine has, a
            missing or malformed TF_CONFIG, or no TPU.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Expected a strategy in {STRATEGIES}. Received: {name!r}")
    if num_gpus is not None and num_gpus < 0:
        raise ValueError(f"--num_gpus must be 0 or more. Received: {num_gpus}")
    if num_cpu_devices > 1 and name != MIRRORED:
        raise ValueError(
            f"--num_cpu_devices={num_cpu_devices} applies only to "
            f"--distribution_strategy={MIRRORED}, and this run has {name}. Pass "
            f"--distribution_strategy={MIRRORED}, or drop --num_cpu_devices."
        )
    if os.environ.get("TF_CONFIG") and name not in (MULTI_WORKER_MIRRORED, TPU):
        logging.warning(
            "TF_CONFIG is set, but --distribution_strategy=%s ignores it: this process "
            "trains alone. Pass --distribution_strategy=%s to train with the cluster.",
            name, MULTI_WORKER_MIRRORED,
        )
    split_cpu(num_cpu_devices)

    if name == TPU:
        strategy = _create_tpu_strategy(tpu_address)
    elif name == DEFAULT:
        strategy = tf.distribute.get_strategy()
    elif name == MULTI_WORKER_MIRRORED:
        read_tf_config()
        _use_gpus(num_gpus)
        try:
            strategy = _MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise ValueError(
                f"Cannot join the cluster: {error}. Create the strategy first, before "
                "anything else uses TensorFlow."
            ) from None
    else:
        _use_gpus(num_gpus)
        strategy = _local_strategy(name)

    logging.info(
        "Strategy %s with %d replica(s) in sync%s.",
        type(strategy).__name__.lstrip("_"),
        strategy.num_replicas_in_sync,
        "" if is_chief(strategy) else "; this worker is not the chief",
    )
    return strategy


def _local_strategy(name):
    """`mirrored` or `one_device` on the visible GPUs, else on the CPU devices."""
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == ONE_DEVICE:
        return tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)
    devices = gpus or cpus
    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0].name)
    return mirrored_strategy(device.name for device in devices)


def is_multi_worker(strategy):
    """Returns whether `strategy` spans several processes that must act in step."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in cluster.jobs) > 1


def is_chief(strategy):
    """Returns whether this process writes checkpoints, summaries, results and the export.

    In a cluster that is the `chief` task, or worker 0 when there is no
    chief; a single process always is.
    """
    return strategy.extended.should_checkpoint


class WorkerLost(RuntimeError):
    """Another worker of a multi-worker run stopped, so this one cannot go on."""


@contextlib.contextmanager
def reporting_lost_workers(strategy, model_dir):
    """Turns the error a worker gets when a peer stops into `WorkerLost`.

    When a worker of a multi-worker run dies, the others' collective
    operations fail within seconds with `UnavailableError` (TensorFlow's
    peer health checks). The run can only go on when every worker is
    started again, and then it continues from the chief's latest checkpoint.
    """
    try:
        yield
    except tf.errors.UnavailableError as error:
        if not is_multi_worker(strategy):
            raise
        lines = [line.strip() for line in error.message.splitlines() if line.strip()]
        cause = next((line for line in lines if "unhealthy" in line or "aborted" in line), lines[0])
        raise WorkerLost(
            f"A worker of the cluster stopped ({cause}). Start every worker "
            "again with the same flags and TF_CONFIG: training continues from the "
            f"latest checkpoint in {model_dir}."
        ) from None


@contextlib.contextmanager
def scratch_directory(strategy):
    """Yields a new folder for a non-chief worker's files, deleted afterwards.

    Every worker runs the same callbacks, which save checkpoints and write
    summaries; those of workers other than the chief go here and are dropped.
    """
    resolver = strategy.cluster_resolver
    path = tempfile.mkdtemp(prefix=f"alexnet_tf_{resolver.task_type}{resolver.task_id}_")
    logging.info(
        "This worker writes its checkpoints and summaries to %s, deleted at the end.", path
    )
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def per_replica_batch_size(global_batch_size, num_replicas):
    """Returns the batch size of each replica.

    Raises:
        ValueError: if the global batch does not divide evenly.
    """
    if global_batch_size % num_replicas:
        raise ValueError(
            f"The global batch size {global_batch_size} does not divide by the "
            f"{num_replicas} replicas. Pass a multiple of {num_replicas} to "
            "--global_batch_size."
        )
    return global_batch_size // num_replicas
