"""The files a training run keeps in its model directory.

    MODEL_DIR/model_config.json      what the export needs to rebuild the model
    MODEL_DIR/checkpoints/ckpt-N.*   model, optimizer and epoch after epoch N
    MODEL_DIR/checkpoints/interrupted/ckpt-S.*
                                     the same at optimizer step S, saved on SIGTERM
    MODEL_DIR/run_config-epochN.json the settings of the run started at epoch N
    MODEL_DIR/train, validation      TensorBoard event files
    MODEL_DIR/eval_results.json      final validation metrics
    MODEL_DIR/export/                the SavedModel for serving
"""

import json
import os
import uuid

from absl import logging
import tensorflow as tf

MODEL_CONFIG_FILE = "model_config.json"
EVAL_RESULTS_FILE = "eval_results.json"
CHECKPOINT_SUBDIR = "checkpoints"

# Settings that change the model's variables or their meaning: a run with other
# values cannot continue from the checkpoints. Each maps to its value in model
# configs written before the setting existed.
_FIXED_MODEL_SETTINGS = {"class_names": None, "image_size": None, "variant": "paper"}


def read_json(path):
    with tf.io.gfile.GFile(path) as file:
        return json.load(file)


def write_json(path, value):
    """Writes JSON through a temporary file, so a crash leaves no partial file."""
    temporary_path = f"{path}.tmp"
    with tf.io.gfile.GFile(temporary_path, "w") as file:
        json.dump(value, file, indent=2, sort_keys=True)
        file.write("\n")
    tf.io.gfile.rename(temporary_path, path, overwrite=True)


def read_model_config(model_dir, missing_ok=False):
    """Reads the settings that rebuild the model of a training run.

    Args:
        model_dir: the run's model directory.
        missing_ok: return None instead of raising when there is no config.

    Raises:
        FileNotFoundError: if `model_dir` has no model config.
    """
    path = os.path.join(model_dir, MODEL_CONFIG_FILE)
    if missing_ok and not tf.io.gfile.exists(path):
        return None
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"No {MODEL_CONFIG_FILE} in {model_dir!r}: this is not the model_dir of "
            "a training run. Pass the --model_dir given to alexnet_tf.train."
        )
    return read_json(path)


def save_or_check_model_config(model_dir, model_config):
    """Saves the model config of a new run, or checks it against an existing one.

    Args:
        model_dir: the run's model directory.
        model_config: dict with at least the keys in `_FIXED_MODEL_SETTINGS`.

    A new run gets a random `run_id`, which its exports record, so that a
    moved or copied model directory still recognizes its own export.

    Raises:
        ValueError: if the directory contains a run with other classes, image
            size or variant, whose checkpoints this model could not load.
        FileExistsError: if `model_dir` is a file.
    """
    if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
        raise FileExistsError(
            f"Model directory {model_dir!r} is a file. Pass a folder to --model_dir."
        )
    path = os.path.join(model_dir, MODEL_CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        tf.io.gfile.makedirs(model_dir)
        write_json(path, dict(model_config, run_id=uuid.uuid4().hex))
        return

    saved = read_json(path)
    for key, default in _FIXED_MODEL_SETTINGS.items():
        saved_value = saved.get(key, default)
        value = model_config.get(key, default)
        if saved_value != value:
            raise ValueError(
                f"{model_dir!r} contains a run with {key}={_short(saved_value)}, but this "
                f"run has {key}={_short(value)}. Pass a new --model_dir, "
                "or the data and settings of that run to continue it."
            )


def _short(value, max_items=10):
    if isinstance(value, (list, tuple)) and len(value) > max_items:
        return f"{list(value[:max_items])} ... ({len(value)} items)"
    return repr(value)


def checkpoint_dir(model_dir):
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def create_checkpoint_manager(
    model_dir, model, optimizer, epoch_variable, max_to_keep=3, extra_trackables=None
):
    """Creates the checkpoint manager of a run.

    The optimizer must be built first (`optimizer.build(...)`), so that its
    momentum slots exist when a checkpoint is restored into them.

    Args:
        model_dir: the run's model directory.
        model: the Keras model.
        optimizer: its optimizer, holding the step count and momentum.
        epoch_variable: int64 `tf.Variable` counting finished epochs.
        max_to_keep: number of most recent checkpoints kept on disk.
        extra_trackables: dict of further state to save, such as
            `{"lr_plateau": schedules.PlateauState()}`: checkpoint names to
            `tf.Variable`s or `tf.Module`s. None for none.

    Returns:
        A `tf.train.CheckpointManager`.
    """
    extra_trackables = dict(extra_trackables or {})
    reserved = {"model", "optimizer", "epoch"} & extra_trackables.keys()
    if reserved:
        raise ValueError(
            f"extra_trackables may not use the names {sorted(reserved)}, which the "
            "model, optimizer and epoch count have. Pass other names."
        )
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, epoch=epoch_variable, **extra_trackables
    )
    return tf.train.CheckpointManager(
        checkpoint, checkpoint_dir(model_dir), max_to_keep=max_to_keep
    )


def restore_latest(manager, checkpoint_directory=None, optional_names=()):
    """Restores the latest checkpoint into `manager`'s checkpoint, if there is one.

    Args:
        manager: the `tf.train.CheckpointManager` of this run.
        checkpoint_directory: where to look for the latest checkpoint; None
            for the manager's own directory. A worker that is not the chief
            saves into a scratch directory but restores the chief's checkpoints.
        optional_names: names of the checkpoint's objects that checkpoints of
            earlier versions of this program lack. Such a checkpoint restores
            without the check below, leaving those objects as they are.

    Returns:
        The restored checkpoint's path, or None when there is none.

    Raises:
        ValueError: if the checkpoint lacks variables of this run, as when a
            run with another learning-rate schedule wrote it.
    """
    if checkpoint_directory is None:
        path = manager.latest_checkpoint
    else:
        path = tf.train.latest_checkpoint(checkpoint_directory)
    if path is None:
        return None

    saved_names = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    status = manager.checkpoint.restore(path)
    if not set(optional_names) <= saved_names:
        status.expect_partial()
        return path
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(
            f"Checkpoint {path!r} has no values for some variables of this run, so a "
            "run with other settings wrote it, for example with another --lr_schedule "
            "(only plateau saves its state). Pass that run's settings to continue it, "
            f"or a new --model_dir. {error}"
        ) from None
    return path


def restore_model(model_dir, model, checkpoint_path=None):
    """Restores only the model's weights from a run's checkpoint.

    Args:
        model_dir: the run's model directory.
        model: a model built from the run's model config.
        checkpoint_path: a checkpoint prefix, or None for the latest one.

    Returns:
        `(checkpoint_path, epoch)`.

    Raises:
        FileNotFoundError: if the run has no checkpoint.
    """
    if checkpoint_path is None:
        checkpoint_path = tf.train.latest_checkpoint(checkpoint_dir(model_dir))
    if checkpoint_path is None:
        raise FileNotFoundError(
            f"No checkpoint in {checkpoint_dir(model_dir)!r}. Train at least one "
            "epoch with alexnet_tf.train first."
        )
    if not tf.io.gfile.exists(checkpoint_path + ".index"):
        state = tf.train.get_checkpoint_state(checkpoint_dir(model_dir))
        available = list(state.all_model_checkpoint_paths) if state else []
        raise FileNotFoundError(
            f"Checkpoint {checkpoint_path!r} not found. Available: {available or 'none'}."
        )

    epoch = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, epoch=epoch)
    checkpoint.restore(checkpoint_path).expect_partial().assert_existing_objects_matched()
    logging.info("Restored %s (epoch %d).", checkpoint_path, int(epoch.numpy()))
    return checkpoint_path, int(epoch.numpy())
