"""Saves a checkpoint and stops training when the process is asked to terminate.

Schedulers announce preemption with SIGTERM (Kubernetes, Slurm, spot and
preemptible VMs) and follow with SIGKILL after a grace period. On SIGTERM
training finishes the step it is in, then saves the model, the optimizer and
its position in the epoch to `MODEL_DIR/checkpoints/interrupted/`. The next
run with the same `model_dir` continues from that step. Those
checkpoints sit apart from the per-epoch `checkpoints/ckpt-N`, which keep
meaning "after epoch N".
"""

import os
import signal
import threading

from absl import logging
import keras
import tensorflow as tf

from alexnet_tf import distribution
from alexnet_tf import model_dir as model_dir_lib

INTERRUPTED_SUBDIR = "interrupted"
EPOCH_STEP_NAME = "epoch_step"

_EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"
_EPOCH_STEP_KEY = f"{EPOCH_STEP_NAME}/.ATTRIBUTES/VARIABLE_VALUE"


def interrupted_dir(model_dir):
    return os.path.join(model_dir_lib.checkpoint_dir(model_dir), INTERRUPTED_SUBDIR)


def create_interrupted_manager(checkpoint, model_dir):
    """Returns the manager of the mid-epoch checkpoint; only the newest one is kept."""
    return tf.train.CheckpointManager(checkpoint, interrupted_dir(model_dir), max_to_keep=1)


def _position(path):
    """Returns (finished epochs, steps into the next epoch) saved in a checkpoint."""
    reader = tf.train.load_checkpoint(path)
    epoch = int(reader.get_tensor(_EPOCH_KEY))
    step = int(reader.get_tensor(_EPOCH_STEP_KEY)) if reader.has_tensor(_EPOCH_STEP_KEY) else 0
    return epoch, step


def latest_interrupted(model_dir):
    """Returns the mid-epoch checkpoint to continue from, or None.

    It is used only when it is newer than the latest per-epoch checkpoint, as
    it is right after a preemption. Once the run finishes that epoch, the
    per-epoch checkpoint supersedes it.
    """
    path = tf.train.latest_checkpoint(interrupted_dir(model_dir))
    if path is None:
        return None
    epoch_path = tf.train.latest_checkpoint(model_dir_lib.checkpoint_dir(model_dir))
    if epoch_path is not None and _position(epoch_path)[0] > _position(path)[0]:
        return None
    return path


class Preempted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint; running again continues it.

    Attributes:
        epoch: finished epochs at the stop.
        epoch_step: steps done in the next epoch; 0 when it stopped between epochs.
        path: the checkpoint that contains this point.
    """

    def __init__(self, epoch, epoch_step, path):
        if epoch_step:
            where = f"at step {epoch_step} of epoch {epoch + 1}"
        else:
            where = f"after epoch {epoch}"
        super().__init__(
            f"Stopped on SIGTERM {where}, saved in {path}. Run the same command again "
            "to continue from there."
        )
        self.epoch = epoch
        self.epoch_step = epoch_step
        self.path = path


class SaveOnTerminate(keras.callbacks.Callback):
    """On SIGTERM, saves a checkpoint after the current step and stops `fit`.

    Mid-epoch the callback raises `Preempted` out of `fit`, so that neither a
    validation pass nor the epoch-end callbacks run on a partial epoch. The
    caller then closes what `on_train_end` would have closed. Between epochs it
    sets `stop_training` instead, after the epoch's checkpoint is saved, so it
    must come after `callbacks.EpochCheckpoint` in the list.

    Between `on_train_begin` and `on_train_end` the callback owns the SIGTERM
    handler, and the previous handler comes back afterwards. In a multi-worker
    run a signal may reach only some workers. So every `sync_every_steps`
    steps the workers sum their flags with one small all-reduce, and either
    all stop at the same step or none does. A single process checks after
    every step.

    Args:
        manager: the `create_interrupted_manager` of this process's output
            directory.
        epoch_variable: int64 `tf.Variable` with the number of finished epochs.
        epoch_step_variable: int64 `tf.Variable` with the steps done in the
            unfinished epoch, saved with the checkpoint.
        strategy: the run's `tf.distribute.Strategy`.
        initial_epoch_step: steps of the first epoch that a resumed run had
            done before, so that a second preemption records the right step.
        sync_every_steps: multi-worker runs only: steps between agreements.

    Attributes:
        stopped_between_epochs: the number of finished epochs when training
            stopped on SIGTERM after an epoch, else None.
    """

    def __init__(
        self, manager, epoch_variable, epoch_step_variable, strategy,
        initial_epoch_step=0, sync_every_steps=10,
    ):
        super().__init__()
        self._manager = manager
        self._epoch_variable = epoch_variable
        self._epoch_step_variable = epoch_step_variable
        self._strategy = strategy
        self._step_offset = initial_epoch_step
        self._multi_worker = distribution.is_multi_worker(strategy)
        self._sync_every_steps = sync_every_steps if self._multi_worker else 1
        self._requested = threading.Event()
        self._previous_handler = None
        self._epoch = 0
        self.stopped_between_epochs = None

    def _on_sigterm(self, signum, frame):
        del signum, frame
        logging.warning("SIGTERM received: saving a checkpoint after this step, then stopping.")
        self._requested.set()

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        else:
            logging.warning("Training runs outside the main thread: SIGTERM is not handled.")

    def on_train_end(self, logs=None):
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self._step_offset + batch + 1
        if step % self._sync_every_steps or not self._all_agree():
            return
        self._epoch_variable.assign(self._epoch)
        self._epoch_step_variable.assign(step)
        path = self._manager.save(checkpoint_number=int(self.model.optimizer.iterations.numpy()))
        self._epoch_step_variable.assign(0)
        raise Preempted(self._epoch, step, path)

    def on_epoch_end(self, epoch, logs=None):
        # The per-epoch checkpoint, saved by an earlier callback, contains this point.
        self._step_offset = 0
        if self._all_agree():
            logging.warning("SIGTERM received: stopping after epoch %d.", epoch + 1)
            self.stopped_between_epochs = epoch + 1
            self.model.stop_training = True

    def _all_agree(self):
        """Returns whether any process received SIGTERM; a collective call in multi-worker runs."""
        requested = self._requested.is_set()
        if not self._multi_worker:
            return requested
        total = self._strategy.reduce(
            tf.distribute.ReduceOp.SUM, tf.constant(int(requested), tf.int32), axis=None
        )
        return int(total) > 0
