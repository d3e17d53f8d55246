"""Chooses the `tf.distribute` strategy and splits the global batch over replicas."""

from absl import logging
import tensorflow as tf

STRATEGIES = ("mirrored", "one_device")


def create_strategy(name="mirrored"):
    """Creates the distribution strategy for this machine.

    Args:
        name: `"mirrored"` replicates the model on every visible GPU with
            `MirroredStrategy`, or runs on the CPU with `OneDeviceStrategy` when
            there is no GPU. `"one_device"` uses the first GPU, else the CPU.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Expected a strategy in {STRATEGIES}. Received: {name!r}")

    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" and gpus:
        strategy = tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    elif gpus:
        strategy = tf.distribute.OneDeviceStrategy(gpus[0].name)
    else:
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")

    logging.info(
        "Strategy %s with %d replica(s) on %s.",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        [device.name for device in gpus] or ["/cpu:0"],
    )
    return strategy


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
