"""Tests that the TensorBoard callbacks write their summaries at every step they choose."""

import os

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import callbacks as callbacks_lib
from alexnet_tf.data import bad_images as bad_images_lib
import training_test


def tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def summary_steps(event_dir, tag):
    """Returns the sorted steps of the summaries named `tag` under `event_dir`."""
    values = training_test.summary_values(event_dir)
    return sorted(step for step, value in values if value.tag == tag)


class TensorBoardTest(tf.test.TestCase):

    def test_epoch_summaries_with_unaligned_steps(self):
        log_dir = self.create_tempdir().full_path
        images = np.zeros([8, 2], np.float32)
        labels = np.zeros([8, 1], np.float32)
        model = tiny_model()

        # 4 batches an epoch, so no epoch ends on a multiple of update_freq=3.
        model.fit(
            images, labels, batch_size=2, epochs=2, validation_data=(images, labels),
            callbacks=[callbacks_lib.TensorBoard(log_dir=log_dir, update_freq=3)], verbose=0,
        )

        train_dir = os.path.join(log_dir, "train")
        self.assertEqual(summary_steps(train_dir, "epoch_loss"), [0, 1])
        self.assertEqual(summary_steps(train_dir, "epoch_learning_rate"), [0, 1])
        self.assertEqual(summary_steps(os.path.join(log_dir, "validation"), "epoch_loss"), [0, 1])
        self.assertEqual(summary_steps(train_dir, "batch_loss"), [3, 6])


class OwnSummariesTest(tf.test.TestCase):
    """Callbacks writing under a false record_if, as Keras' TensorBoard sets between its steps."""

    def test_throughput_ignores_record_condition(self):
        log_dir = self.create_tempdir().full_path
        writer = tf.summary.create_file_writer(log_dir)
        callback = callbacks_lib.Throughput(writer, global_batch_size=2, every_steps=2)
        callback.set_model(tiny_model())

        with tf.summary.record_if(False):
            callback.on_train_begin()
            for batch in range(4):  # The first window of 2 steps is skipped.
                callback.on_train_batch_end(batch)
        writer.flush()

        self.assertLen(summary_steps(log_dir, "images_per_second"), 1)

    def test_throughput_counts_steps_of_each_execution(self):
        log_dir = self.create_tempdir().full_path
        writer = tf.summary.create_file_writer(log_dir)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", steps_per_execution=2)
        callback = callbacks_lib.Throughput(writer, global_batch_size=1, every_steps=2)

        # 8 steps in 4 calls of 2 steps. Every call ends a window of 2 steps,
        # and the first window is skipped.
        model.fit(np.zeros([8, 2], np.float32), np.zeros([8, 1], np.float32), batch_size=1,
                  callbacks=[callback], verbose=0)
        writer.flush()

        self.assertEqual(summary_steps(log_dir, "images_per_second"), [4, 6, 8])

    def test_skipped_images_ignores_record_condition(self):
        log_dir = self.create_tempdir().full_path
        writer = tf.summary.create_file_writer(log_dir)
        bad_images = bad_images_lib.BadImageLog("test split")
        callback = callbacks_lib.SkippedImages([(bad_images, writer)], every_steps=2)
        callback.set_model(tiny_model())

        with tf.summary.record_if(False):
            callback.on_train_batch_end(1)
            with self.assertLogs(logger="absl", level="WARNING"):
                bad_images.record("a.jpg", "empty file")
            callback.on_epoch_end(0)
        writer.flush()

        self.assertEqual(summary_steps(log_dir, "skipped_images"), [0, 0])

    def test_skipped_images_writes_each_point_once(self):
        log_dir = self.create_tempdir().full_path
        writer = tf.summary.create_file_writer(log_dir)
        bad_images = bad_images_lib.BadImageLog("test split")
        callback = callbacks_lib.SkippedImages([(bad_images, writer)], every_steps=2)
        callback.set_model(tiny_model())

        callback.on_epoch_end(0)
        callback.on_train_end()
        writer.flush()

        self.assertEqual(summary_steps(log_dir, "skipped_images"), [0])


if __name__ == "__main__":
    absltest.main()
