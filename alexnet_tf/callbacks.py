"""Keras callbacks for TensorBoard, checkpoints, throughput, skipped and augmented images."""

import math
import os
import time

from absl import logging
import keras
import tensorflow as tf

from alexnet_tf import kernel_figure
from alexnet_tf import preprocessing


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, with the epoch summaries written after every epoch.

    With an integer `update_freq`, Keras 3.15 records summaries only while its
    count of the `fit` call's batches divides by `update_freq`, and that
    condition holds for every callback, from the start of training to its end.
    Without this subclass, `epoch_loss`, `epoch_learning_rate` and the
    validation metrics appear only after epochs whose batch count divides by
    `update_freq`. Callbacks that write their own summaries at other steps
    need `tf.summary.record_if(True)` too.
    """

    def on_epoch_end(self, epoch, logs=None):
        with tf.summary.record_if(True):
            super().on_epoch_end(epoch, logs)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model, the optimizer and the epoch count after every epoch.

    Args:
        manager: a `tf.train.CheckpointManager` whose checkpoint contains the
            model, its optimizer and `epoch_variable`.
        epoch_variable: int64 `tf.Variable` with the number of finished epochs.
    """

    def __init__(self, manager, epoch_variable):
        super().__init__()
        self._manager = manager
        self._epoch_variable = epoch_variable

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_variable.assign(epoch + 1)
        path = self._manager.save(checkpoint_number=epoch + 1)
        logging.info("Saved checkpoint %s after epoch %d.", path, epoch + 1)


class Throughput(keras.callbacks.Callback):
    """Logs training images per second and writes them to TensorBoard.

    The first window of each `fit` call is skipped, because it includes tracing
    and compiling the training step. Steps are counted from the batch index
    Keras passes, so that a call that runs several steps
    (`steps_per_execution` above 1) counts as all of them.

    Args:
        writer: a `tf.summary` writer, normally the training one.
        global_batch_size: images per step over all replicas.
        every_steps: steps per measurement window.
    """

    def __init__(self, writer, global_batch_size, every_steps=100):
        super().__init__()
        self._writer = writer
        self._global_batch_size = global_batch_size
        self._every_steps = max(1, every_steps)
        self._window_start = None
        self._steps_in_window = 0
        self._last_batch = -1
        self._skip_window = True

    def on_train_begin(self, logs=None):
        self._skip_window = True
        self._start_window()

    def _start_window(self):
        self._window_start = time.perf_counter()
        self._steps_in_window = 0

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index in the epoch of the last step the call ran.
        self._steps_in_window += batch - self._last_batch
        self._last_batch = batch
        if self._steps_in_window < self._every_steps:
            return

        elapsed = time.perf_counter() - self._window_start
        images_per_second = self._steps_in_window * self._global_batch_size / elapsed
        step = int(self.model.optimizer.iterations.numpy())
        if self._skip_window:
            self._skip_window = False
        else:
            # Keras' TensorBoard records only at its own steps (see TensorBoard
            # above), and a window need not end on one of them.
            with self._writer.as_default(), tf.summary.record_if(True):
                tf.summary.scalar("images_per_second", images_per_second, step=step)
            logging.info(
                "Step %d: %.1f images/s, loss %.4f.",
                step, images_per_second, (logs or {}).get("loss", math.nan),
            )
        self._start_window()

    def on_epoch_begin(self, epoch, logs=None):
        # Validation time between epochs must not count as training time.
        self._start_window()
        self._last_batch = -1


class SkippedImages(keras.callbacks.Callback):
    """Writes the number of bad image files the input pipelines skipped.

    TensorBoard gets `skipped_images` under each writer, the running total of
    its `bad_images.BadImageLog`, every `every_steps` training steps and after
    each epoch and validation pass. At the end of training, a total above zero
    is logged with the reasons.

    Args:
        logs_and_writers: pairs of a `BadImageLog` and the `tf.summary`
            writer to write its count to.
        every_steps: training steps between points.
    """

    def __init__(self, logs_and_writers, every_steps=100):
        super().__init__()
        self._logs_and_writers = tuple(logs_and_writers)
        self._every_steps = max(1, every_steps)
        self._last_point = None

    def _write(self):
        step = int(self.model.optimizer.iterations.numpy())
        point = (step, tuple(bad_images.count for bad_images, _ in self._logs_and_writers))
        if point == self._last_point:
            return  # Written already, as at the end of the last epoch.
        self._last_point = point
        for bad_images, writer in self._logs_and_writers:
            # As in Throughput, these steps need not be the ones Keras records.
            with writer.as_default(), tf.summary.record_if(True):
                tf.summary.scalar("skipped_images", bad_images.count, step=step)

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self._every_steps == 0:
            self._write()

    def on_epoch_end(self, epoch, logs=None):
        self._write()

    def on_train_end(self, logs=None):
        self._write()
        for bad_images, _ in self._logs_and_writers:
            if bad_images.count:
                logging.warning(
                    "%d bad image files were skipped in the %s: %s",
                    bad_images.count, bad_images.description, bad_images.reasons(),
                )


class AugmentedImages(keras.callbacks.Callback):
    """Writes a grid of augmented training images to TensorBoard once per `fit`.

    Args:
        writer: a `tf.summary` writer.
        images: float32 tensor `(count, height, width, 3)` as the model receives
            them, mean subtracted.
        columns: images per row of the grid.
    """

    def __init__(self, writer, images, columns=4):
        super().__init__()
        self._writer = writer
        self._grid = image_grid(preprocessing.denormalize(images), columns)

    def on_train_begin(self, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        with self._writer.as_default(), tf.summary.record_if(True):
            tf.summary.image("augmented_training_images", self._grid[tf.newaxis], step=step)


class ConvKernels(keras.callbacks.Callback):
    """Writes conv1's kernels as an image grid to TensorBoard.

    The grid is `kernel_figure.conv1_kernel_grid` with each kernel enlarged
    `scale` times: 369x144 pixels for the paper's 96 kernels of 11x11 at
    scale 2. It is written when training starts and after every epoch, under
    the tag `conv1_kernels`. A model without a layer named "conv1" gets one
    warning and no image.

    Args:
        writer: a `tf.summary` writer, normally the training one.
        scale: integer enlargement factor of each kernel.
    """

    def __init__(self, writer, scale=2):
        super().__init__()
        self._writer = writer
        self._scale = scale
        self._enabled = True

    def _write(self):
        if not self._enabled:
            return
        try:
            grid = kernel_figure.conv1_kernel_grid(self.model, scale=self._scale)
        except ValueError as error:
            logging.warning("No conv1_kernels image in TensorBoard: %s", error)
            self._enabled = False
            return

        step = int(self.model.optimizer.iterations.numpy())
        with self._writer.as_default(), tf.summary.record_if(True):
            tf.summary.image("conv1_kernels", grid[tf.newaxis], step=step)

    def on_train_begin(self, logs=None):
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        self._write()


def image_grid(images, columns):
    """Tiles images into one image, row by row, padding the last row with black.

    Args:
        images: tensor `(count, height, width, channels)`.
        columns: images per row.

    Returns:
        A tensor `(rows * height, columns * width, channels)`.
    """
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    padding = rows * columns - count
    images = tf.concat([images, tf.zeros([padding, height, width, channels], images.dtype)], 0)
    images = tf.reshape(images, [rows, columns, height, width, channels])
    images = tf.transpose(images, [0, 2, 1, 3, 4])
    return tf.reshape(images, [rows * height, columns * width, channels])


def summary_writer(model_dir, name):
    """Returns a writer into `model_dir/name`, where Keras' TensorBoard writes."""
    return tf.summary.create_file_writer(os.path.join(model_dir, name))
