"""Learning-rate schedules: warm-up, step drops, cosine decay and a plateau rule.

Every schedule here is a function of the optimizer's step count, which
checkpoints restore with the optimizer, so a resumed run continues on the same
curve. The plateau rule of Krizhevsky et al. (2012), section 5, also depends on
the validation error, so its state lives in `tf.Variable`s that the run's
checkpoint saves (`PlateauState`).
"""

import math

from absl import logging
import keras
from keras import ops
import tensorflow as tf

PLATEAU = "plateau"
STEP = "step"
COSINE = "cosine"
CONSTANT = "constant"
SCHEDULES = (PLATEAU, STEP, COSINE, CONSTANT)

# Krizhevsky et al. (2012), section 5: "divide the learning rate by 10".
DROP_FACTOR = 0.1


def scaled_learning_rate(learning_rate, global_batch_size, learning_rate_batch_size):
    """Applies the linear scaling rule: the rate grows in proportion to the batch.

    Args:
        learning_rate: the rate meant for `learning_rate_batch_size` images per step.
        global_batch_size: images per step over all replicas in this run.
        learning_rate_batch_size: the batch `learning_rate` is meant for, or 0
            to use `learning_rate` unscaled.

    Returns:
        The peak learning rate for `global_batch_size` images per step.
    """
    if learning_rate_batch_size < 0:
        raise ValueError(
            "Expected learning_rate_batch_size >= 0 (0 turns scaling off). Received: "
            f"learning_rate_batch_size={learning_rate_batch_size}"
        )
    if learning_rate_batch_size == 0:
        logging.info(
            "Peak learning rate %g for the global batch of %d, unscaled.",
            learning_rate, global_batch_size,
        )
        return learning_rate

    peak_learning_rate = learning_rate * global_batch_size / learning_rate_batch_size
    logging.info(
        "Peak learning rate %g = %g x global batch %d / %d (linear scaling rule).",
        peak_learning_rate, learning_rate, global_batch_size, learning_rate_batch_size,
    )
    return peak_learning_rate


def step_schedule(learning_rate, boundary_epochs, steps_per_epoch, decay_factor=DROP_FACTOR):
    """Returns a schedule that multiplies the learning rate at given epochs.

    Args:
        learning_rate: the rate before the first boundary.
        boundary_epochs: sorted epochs, counted from 0, at whose start the rate
            is multiplied by `decay_factor`; fractions of an epoch are allowed.
        steps_per_epoch: optimizer steps per epoch, to convert epochs to steps.
        decay_factor: the multiplier. Defaults to 0.1, the paper's division by 10.

    Returns:
        A float for no boundaries, else a `PiecewiseConstantDecay` on the
        optimizer's step count, which checkpoints restore with the optimizer.
    """
    if not boundary_epochs:
        return learning_rate
    if list(boundary_epochs) != sorted(boundary_epochs) or boundary_epochs[0] <= 0:
        raise ValueError(
            "Expected positive, increasing epochs for the learning-rate drops. "
            f"Received: {list(boundary_epochs)}"
        )

    # The optimizer computes the rate of an update from the count of updates
    # before it, and PiecewiseConstantDecay switches after each boundary, so
    # boundary b - 1 makes update b, the first of the epoch, use the new rate.
    boundaries = [round(epoch * steps_per_epoch) - 1 for epoch in boundary_epochs]
    values = [learning_rate * decay_factor**index for index in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


@keras.saving.register_keras_serializable(package="alexnet_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule after a linear warm-up, times an optional multiplier.

    The rate of the update that follows `step` finished updates is

        multiplier * peak_learning_rate * (step + 1) / warmup_steps   while step < warmup_steps
        multiplier * decay(step)                                      after that

    so the first update gets `peak_learning_rate / warmup_steps` and the last
    update of the warm-up the peak.

    Args:
        peak_learning_rate: the rate the warm-up ends at.
        warmup_steps: number of warm-up updates; 0 for none.
        decay: a `LearningRateSchedule` of the whole run's step count, or
            None for the peak rate throughout.
        multiplier: a scalar float32 `tf.Variable` read at every step, such as
            `PlateauState.multiplier`, a float, or None for 1. `get_config`
            stores the variable's current value, so a schedule rebuilt from a
            config keeps the rate but no longer follows the variable.
    """

    def __init__(self, peak_learning_rate, warmup_steps=0, decay=None, multiplier=None):
        super().__init__()
        if warmup_steps < 0:
            raise ValueError(f"Expected warmup_steps >= 0. Received: warmup_steps={warmup_steps}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.multiplier = multiplier

    def __call__(self, step):
        float_step = ops.cast(step, "float32")
        if self.decay is None:
            rate = ops.convert_to_tensor(self.peak_learning_rate, "float32")
        else:
            rate = ops.cast(self.decay(step), "float32")

        if self.warmup_steps:
            ramp = self.peak_learning_rate * (float_step + 1.0) / self.warmup_steps
            rate = ops.where(float_step < self.warmup_steps, ramp, rate)
        if self.multiplier is not None:
            rate = rate * ops.cast(self.multiplier, "float32")
        return rate

    def get_config(self):
        multiplier = self.multiplier
        if isinstance(multiplier, tf.Variable):
            multiplier = float(multiplier.numpy())
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay": (
                None if self.decay is None
                else keras.optimizers.schedules.serialize(self.decay)
            ),
            "multiplier": multiplier,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("decay") is not None:
            config["decay"] = keras.optimizers.schedules.deserialize(config["decay"])
        return cls(**config)


def create_schedule(
    name, peak_learning_rate, steps_per_epoch, num_epochs, warmup_epochs=0.0,
    drop_epochs=(), final_learning_rate_fraction=0.0, multiplier=None,
):
    """Builds the learning-rate schedule of a run.

    Args:
        name: one of `SCHEDULES`. "step" divides the rate by 10 at the start
            of each of `drop_epochs`. "cosine" decays it along a half cosine
            from the peak, at the end of warm-up, to `final_learning_rate_fraction`
            of the peak at the end of `num_epochs`. "plateau" scales the peak by
            `multiplier`, which `DropOnPlateau` lowers. "constant" keeps the peak.
        peak_learning_rate: the rate after warm-up, see `scaled_learning_rate`.
        steps_per_epoch: optimizer steps per epoch.
        num_epochs: epochs of the whole run, resumed ones included.
        warmup_epochs: epochs of linear warm-up before the schedule; fractions
            are rounded to whole steps.
        drop_epochs: "step" only: increasing epochs after the warm-up.
        final_learning_rate_fraction: "cosine" only: the last rate as a
            fraction of the peak, in [0, 1].
        multiplier: "plateau" only, and required there: `PlateauState.multiplier`.

    Returns:
        A `WarmupSchedule`.

    Raises:
        ValueError: for an unknown name, a warm-up as long as the run, drops
            during the warm-up, or a multiplier with a schedule other than plateau.
    """
    if name not in SCHEDULES:
        raise ValueError(f"Unknown learning-rate schedule {name!r}. Expected one of {SCHEDULES}.")
    if (name == PLATEAU) != (multiplier is not None):
        raise ValueError(
            "The plateau schedule needs the multiplier of a PlateauState, and the "
            f"others none. Received: name={name!r}, multiplier={multiplier!r}"
        )
    total_steps = num_epochs * steps_per_epoch
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    if warmup_epochs < 0 or warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_epochs={warmup_epochs} leaves no epochs at the peak rate in a run "
            f"of num_epochs={num_epochs}. Pass a warmup_epochs of at least 0 and below "
            "num_epochs."
        )

    decay = None
    if name == STEP:
        decay = step_schedule(peak_learning_rate, drop_epochs, steps_per_epoch)
        first_drop_step = round(drop_epochs[0] * steps_per_epoch) if drop_epochs else None
        if warmup_steps and first_drop_step is not None and first_drop_step <= warmup_steps:
            raise ValueError(
                f"The first learning-rate drop, at epoch {drop_epochs[0]:g}, is not after "
                f"the warm-up of {warmup_epochs:g} epochs, so the peak rate would never be "
                "used. Pass drop epochs after the warm-up, or a shorter warm-up."
            )
        if not isinstance(decay, keras.optimizers.schedules.LearningRateSchedule):
            decay = None
    elif name == COSINE:
        if not 0.0 <= final_learning_rate_fraction <= 1.0:
            raise ValueError(
                "Expected final_learning_rate_fraction in [0, 1]. Received: "
                f"final_learning_rate_fraction={final_learning_rate_fraction}"
            )
        # CosineDecay starts its decay after its warmup_steps; its own ramp,
        # from 0 and one step later than WarmupSchedule's, is never used.
        decay = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=total_steps - warmup_steps,
            alpha=final_learning_rate_fraction,
            warmup_target=peak_learning_rate,
            warmup_steps=warmup_steps,
        )

    logging.info(
        "Learning-rate schedule: %s. Warm-up: %d steps (%g epochs).",
        _describe(name, drop_epochs, final_learning_rate_fraction), warmup_steps, warmup_epochs,
    )
    return WarmupSchedule(peak_learning_rate, warmup_steps, decay, multiplier)


def _describe(name, drop_epochs, final_learning_rate_fraction):
    if name == STEP:
        return f"step, drops at epochs {list(drop_epochs)}" if drop_epochs else "step, no drops"
    if name == COSINE:
        return f"cosine, down to {final_learning_rate_fraction:g} of the peak"
    return name


class PlateauState(tf.Module):
    """The state of the plateau rule, in variables that a checkpoint saves.

    Attributes:
        best_error: float64, the lowest validation top-1 error so far, as a
            fraction; infinity before the first epoch.
        epochs_since_improvement: int64, epochs since `best_error` last fell
            by `min_delta` or since the last drop, whichever is later.
        num_drops: int64, drops made so far.
        multiplier: float32, the factor `WarmupSchedule` applies to the rate,
            `DROP_FACTOR ** num_drops`.
    """

    def __init__(self, name="plateau_state"):
        super().__init__(name=name)
        self.best_error = tf.Variable(
            math.inf, dtype=tf.float64, trainable=False, name="best_error"
        )
        self.epochs_since_improvement = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="epochs_since_improvement"
        )
        self.num_drops = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_drops")
        self.multiplier = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="multiplier")


class DropOnPlateau(keras.callbacks.Callback):
    """Divides the learning rate by 10 when the validation top-1 error stops falling.

    The rule of Krizhevsky et al. (2012), section 5: after each epoch, the
    error `1 - val_top_1_accuracy` counts as improved when it is below the
    best so far by at least `min_delta`. After `patience` epochs in a row
    without improvement the rate is divided by 10, and the count starts
    again; there are at most `max_drops` drops. The best error is kept
    across drops.

    `keras.callbacks.ReduceLROnPlateau` is not used for two reasons. It sets
    `optimizer.learning_rate`, which Keras 3 rejects for an optimizer built on a
    `LearningRateSchedule`, so it cannot follow a warm-up. It also keeps its
    best value and wait count in Python attributes, which a resumed run loses.
    Here the rule lowers `state.multiplier`, which the optimizer's
    `WarmupSchedule` reads, and the whole state is in checkpointed variables.

    Place this callback before the ones that write checkpoints or TensorBoard
    summaries, so that they see the epoch's drop.

    Args:
        state: a `PlateauState`, saved in the run's checkpoint.
        patience: epochs without improvement before a drop, at least 1.
            Defaults to 5.
        min_delta: the minimum fall of the error below its best, as a
            fraction, that counts as an improvement. With 0, any fall counts.
            Defaults to 0.001.
        max_drops: the maximum number of drops. Defaults to 3, the paper's count.
        accuracy_key: the epoch log key of the validation top-1 accuracy.
    """

    def __init__(
        self, state, patience=5, min_delta=0.001, max_drops=3, accuracy_key="val_top_1_accuracy"
    ):
        super().__init__()
        if patience < 1 or min_delta < 0 or max_drops < 0:
            raise ValueError(
                "Expected patience >= 1, min_delta >= 0 and max_drops >= 0. Received: "
                f"patience={patience}, min_delta={min_delta}, max_drops={max_drops}"
            )
        self.state = state
        self.patience = patience
        self.min_delta = min_delta
        self.max_drops = max_drops
        self.accuracy_key = accuracy_key

    def on_train_begin(self, logs=None):
        logging.info(
            "Plateau rule: best validation top-1 error %.4f, %d epochs without "
            "improvement, %d of %d drops made, learning rate x%g.",
            float(self.state.best_error.numpy()), int(self.state.epochs_since_improvement.numpy()),
            int(self.state.num_drops.numpy()), self.max_drops, float(self.state.multiplier.numpy()),
        )

    def on_epoch_end(self, epoch, logs=None):
        error = self._validation_error(logs or {})
        best_error = float(self.state.best_error.numpy())
        if error < best_error and best_error - error >= self.min_delta:
            self.state.best_error.assign(error)
            self.state.epochs_since_improvement.assign(0)
            return

        self.state.epochs_since_improvement.assign_add(1)
        waited = int(self.state.epochs_since_improvement.numpy())
        num_drops = int(self.state.num_drops.numpy())
        if waited < self.patience or num_drops >= self.max_drops:
            return

        old_rate = self._current_rate()
        self.state.multiplier.assign(self.state.multiplier * DROP_FACTOR)
        self.state.num_drops.assign_add(1)
        self.state.epochs_since_improvement.assign(0)
        logging.info(
            "After epoch %d the validation top-1 error (%.4f) has not fallen %g below its "
            "best (%.4f) for %d epochs: learning rate %.4g -> %.4g, drop %d of %d.",
            epoch + 1, error, self.min_delta, best_error, waited, old_rate,
            self._current_rate(), num_drops + 1, self.max_drops,
        )

    def _validation_error(self, logs):
        if self.accuracy_key not in logs:
            raise ValueError(
                f"The plateau rule needs {self.accuracy_key!r} in the epoch logs, which "
                f"fit writes when it gets validation data. Logs: {sorted(logs)}"
            )
        return 1.0 - float(logs[self.accuracy_key])

    def _current_rate(self):
        return float(ops.convert_to_numpy(self.model.optimizer.learning_rate))
