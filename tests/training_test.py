"""End-to-end tests of training, resuming, TensorBoard output and the export guard."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from alexnet_tf import distribution
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import training
import sample_images


def small_config(data_dir, model_dir, **overrides):
    """A run that takes seconds: 67-pixel images, 6 per step, a few steps."""
    settings = dict(
        data_dir=data_dir,
        model_dir=model_dir,
        global_batch_size=6,
        num_epochs=3,
        steps_per_epoch=4,
        # 0.01 diverged now and then on these 0-255 inputs in batches of 6.
        learning_rate=0.003,
        learning_rate_batch_size=0,  # 0.003 is the rate for the batch of 6 as it is.
        lr_drop_epochs=(),
        image_size=67,
        resize_size=70,
        initialization="glorot_uniform",
        seed=1,
        log_every_steps=2,
        export=False,
    )
    settings.update(overrides)
    return training.TrainConfig(**settings)


# Checkpoint keys of the optimizer's step count and of its i-th variable.
ITERATIONS_KEY = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
OPTIMIZER_VARIABLE_KEY = "optimizer/_variables/{}/.ATTRIBUTES/VARIABLE_VALUE"


def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def summary_values(event_dir):
    """Yields (step, summary value) for every summary in the event files under `event_dir`."""
    for path in tf.io.gfile.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                yield event.step, value


def scalar_values(event_dir, tag):
    """Returns the values of one scalar summary under `event_dir`, ordered by step."""
    points = [
        (step, float(tf.make_ndarray(value.tensor)))
        for step, value in summary_values(event_dir)
        if value.tag == tag
    ]
    return [value for _, value in sorted(points)]


def scalar_tags(event_dir):
    """Returns the tags of all summaries in the event files under `event_dir`."""
    return {value.tag for _, value in summary_values(event_dir)}


class ColorTreeTestCase(tf.test.TestCase):
    """Gives each test a fresh tree of colour images and an unused model_dir."""

    NUM_TRAIN = 8
    NUM_VALIDATION = 3

    def setUp(self):
        super().setUp()
        self.data_dir = self.create_tempdir().full_path
        sample_images.write_color_tree(
            self.data_dir, num_train=self.NUM_TRAIN, num_validation=self.NUM_VALIDATION
        )
        self.model_dir = os.path.join(self.create_tempdir().full_path, "run")


class TrainingTest(ColorTreeTestCase):

    def test_two_replicas_train_with_falling_loss(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
        config = small_config(self.data_dir, self.model_dir, num_epochs=4, jit_compile=True)

        with self.assertLogs(logger="absl", level="WARNING") as logs:
            results = training.train_and_evaluate(config, strategy)

        self.assertIn("--jit_compile is ignored: with 2 replicas", "\n".join(logs.output))
        self.assertEqual(strategy.num_replicas_in_sync, 2)
        self.assertEqual(results["epoch"], 4)
        with open(os.path.join(self.model_dir, "eval_results.json")) as file:
            saved = json.load(file)
        self.assertEqual(saved, results)
        self.assertBetween(saved["top_1_accuracy"], 0.0, 1.0)
        self.assertEqual(saved["top_5_accuracy"], 1.0)  # 3 classes: always in the top 5.
        self.assertTrue(np.isfinite(saved["loss"]))

        checkpoint = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(checkpoint.get_tensor(ITERATIONS_KEY), 16)
        losses = scalar_values(os.path.join(self.model_dir, "train"), "epoch_loss")
        self.assertLen(losses, 4)
        self.assertTrue(np.all(np.isfinite(losses)))
        self.assertLess(losses[-1], losses[0])

    def test_one_device_learns_the_colours(self):
        config = small_config(self.data_dir, self.model_dir, num_epochs=5)

        results = training.train_and_evaluate(config, one_device())

        losses = scalar_values(os.path.join(self.model_dir, "train"), "epoch_loss")
        self.assertLen(losses, 5)
        self.assertLess(losses[-1], losses[0])
        self.assertGreater(results["top_1_accuracy"], 0.5)

    def test_tensorboard_summaries_written(self):
        config = small_config(self.data_dir, self.model_dir, num_epochs=1)

        training.train_and_evaluate(config, one_device())

        train_tags = scalar_tags(os.path.join(self.model_dir, "train"))
        validation_tags = scalar_tags(os.path.join(self.model_dir, "validation"))
        for tag in ("epoch_loss", "epoch_top_1_accuracy", "epoch_top_5_accuracy",
                    "epoch_learning_rate", "images_per_second", "augmented_training_images"):
            self.assertIn(tag, train_tags)
        for tag in ("epoch_loss", "epoch_top_1_accuracy", "epoch_top_5_accuracy"):
            self.assertIn(tag, validation_tags)


class StepsPerExecutionTest(ColorTreeTestCase):

    def test_epochs_and_logs_keep_their_steps(self):
        config = small_config(self.data_dir, self.model_dir, num_epochs=2, steps_per_execution=2)

        training.train_and_evaluate(config, one_device())

        checkpoint = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(checkpoint.get_tensor(ITERATIONS_KEY), 8)
        train_dir = os.path.join(self.model_dir, "train")
        self.assertLen(scalar_values(train_dir, "epoch_loss"), 2)
        # log_every_steps=2: one point every 2 steps, after the skipped first window.
        steps = sorted(step for step, value in summary_values(train_dir)
                       if value.tag == "images_per_second")
        self.assertEqual(steps, [4, 6, 8])

    def test_two_replicas_run_one_step_per_execution(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
        # log_every_steps=1 is checked against the one step per execution used.
        config = small_config(self.data_dir, self.model_dir, num_epochs=1, steps_per_execution=2,
                              log_every_steps=1)

        with self.assertLogs(logger="absl", level="WARNING") as logs:
            results = training.train_and_evaluate(config, strategy)

        self.assertEqual(results["epoch"], 1)
        self.assertIn("--steps_per_execution=2 is ignored", "\n".join(logs.output))
        with open(os.path.join(self.model_dir, "run_config-epoch0.json")) as file:
            self.assertEqual(json.load(file)["steps_per_execution"], 1)

    def test_log_every_steps_not_a_multiple(self):
        config = small_config(self.data_dir, self.model_dir, steps_per_execution=3,
                              steps_per_epoch=6, log_every_steps=2)

        with self.assertRaisesRegex(ValueError, "log_every_steps=2 is not a multiple of "
                                    "steps_per_execution=3"):
            training.train_and_evaluate(config, one_device())

    def test_steps_per_epoch_not_a_multiple(self):
        config = small_config(self.data_dir, self.model_dir, steps_per_execution=3,
                              steps_per_epoch=4, log_every_steps=3)

        with self.assertRaisesRegex(ValueError, "steps_per_epoch=4 is not a multiple"):
            training.train_and_evaluate(config, one_device())

    def test_counted_epoch_rounds_down_to_executions(self):
        config = small_config(self.data_dir, self.model_dir, steps_per_epoch=None,
                              steps_per_execution=3)

        # 40 images in batches of 6 are 6 steps, 2 executions of 3.
        self.assertEqual(training._steps_per_epoch(config, 40), 6)
        # 30 images are 5 steps, cut to one execution of 3.
        self.assertEqual(training._steps_per_epoch(config, 30), 3)
        with self.assertRaisesRegex(ValueError, "2 steps.*steps_per_execution=3"):
            training._steps_per_epoch(config, 12)


class ResumeTest(ColorTreeTestCase):

    def test_rerun_continues_with_momentum_and_step(self):
        training.train_and_evaluate(small_config(self.data_dir, self.model_dir, num_epochs=1), one_device())
        first = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))

        # Restoring into a fresh model and optimizer gives the saved momentum.
        config = small_config(self.data_dir, self.model_dir, num_epochs=2)
        model, optimizer = training._build_and_compile(config, 3, 4, jit_compile=False)
        epoch = tf.Variable(0, dtype=tf.int64)
        manager = model_dir_lib.create_checkpoint_manager(self.model_dir, model, optimizer, epoch)
        self.assertIsNotNone(model_dir_lib.restore_latest(manager))
        self.assertEqual(int(epoch.numpy()), 1)
        self.assertEqual(int(optimizer.iterations.numpy()), 4)
        momentums = optimizer.momentums
        self.assertLen(momentums, len(model.trainable_variables))
        saved_keys = first.get_variable_to_shape_map()
        restored_count = 0
        for index, variable in enumerate(optimizer.variables):
            key = OPTIMIZER_VARIABLE_KEY.format(index)
            if key in saved_keys:  # The step count and learning rate have own keys.
                self.assertAllEqual(variable.numpy(), first.get_tensor(key))
                restored_count += 1
        self.assertEqual(restored_count, len(momentums))
        self.assertGreater(max(float(np.abs(m.numpy()).max()) for m in momentums), 0.0)

        with self.assertLogs(logger="absl", level="INFO") as logs:
            results = training.train_and_evaluate(config, one_device())

        self.assertEqual(results["epoch"], 2)
        self.assertTrue(any("Resuming from" in line and "1 of 2 epochs" in line for line in logs.output))
        second = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(second.get_tensor(ITERATIONS_KEY), 8)
        self.assertTrue(os.path.exists(os.path.join(self.model_dir, "run_config-epoch1.json")))

    def test_rerun_after_last_epoch_trains_nothing(self):
        config = small_config(self.data_dir, self.model_dir, num_epochs=1)
        training.train_and_evaluate(config, one_device())

        with self.assertLogs(logger="absl", level="INFO") as logs:
            results = training.train_and_evaluate(config, one_device())

        self.assertEqual(results["epoch"], 1)
        self.assertTrue(any("already finished" in line for line in logs.output))
        checkpoint = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(checkpoint.get_tensor(ITERATIONS_KEY), 4)

    def test_other_classes_in_same_model_dir_are_rejected(self):
        training.train_and_evaluate(small_config(self.data_dir, self.model_dir, num_epochs=1), one_device())
        other_data = self.create_tempdir().full_path
        sample_images.write_color_tree(other_data, num_train=2, num_validation=1)
        os.rename(os.path.join(other_data, "train", "red"), os.path.join(other_data, "train", "crimson"))
        os.rename(os.path.join(other_data, "validation", "red"),
                  os.path.join(other_data, "validation", "crimson"))

        with self.assertRaisesRegex(ValueError, "class_names.*new --model_dir"):
            training.train_and_evaluate(small_config(other_data, self.model_dir), one_device())


class GuardTest(ColorTreeTestCase):

    NUM_TRAIN = 4
    NUM_VALIDATION = 1

    def test_foreign_export_dir_is_rejected_before_training(self):
        export_dir = self.create_tempdir().full_path
        keep = os.path.join(export_dir, "keep.txt")
        with open(keep, "w") as file:
            file.write("user data")
        config = small_config(self.data_dir, self.model_dir, export=True, export_dir=export_dir)

        with self.assertRaisesRegex(FileExistsError, "not empty"):
            training.train_and_evaluate(config, one_device())

        self.assertFalse(os.path.exists(os.path.join(self.model_dir, "checkpoints")))
        with open(keep) as file:
            self.assertEqual(file.read(), "user data")

    def test_model_dir_that_is_a_file(self):
        path = self.create_tempfile("run", content="user data").full_path
        config = small_config(self.data_dir, path)

        with self.assertRaisesRegex(FileExistsError, "is a file"):
            training.train_and_evaluate(config, one_device())

        with open(path) as file:
            self.assertEqual(file.read(), "user data")

    def test_batch_not_divisible_by_replicas(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
        config = small_config(self.data_dir, self.model_dir, global_batch_size=5)

        with self.assertRaisesRegex(ValueError, "5 does not divide by the 2 replicas"):
            training.train_and_evaluate(config, strategy)

        # Nothing was written that would reject the corrected command.
        self.assertFalse(os.path.exists(self.model_dir))

    def test_resize_smaller_than_image(self):
        config = small_config(self.data_dir, self.model_dir, resize_size=60)

        with self.assertRaisesRegex(ValueError, "resize_size=60"):
            training.train_and_evaluate(config, one_device())

    def _add_bad_files(self):
        """Adds a web page, an empty file and a truncated JPEG to both splits."""
        photo = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])
        contents = {"broken.jpg": b"<html>this is not an image</html>", "empty.jpg": b"",
                    "cut.jpg": photo[: len(photo) // 2]}
        for split in ("train", "validation"):
            for name, content in contents.items():
                with open(os.path.join(self.data_dir, split, "red", name), "wb") as file:
                    file.write(content)

    def test_bad_files_are_skipped_and_counted(self):
        self._add_bad_files()
        config = small_config(self.data_dir, self.model_dir, num_epochs=1)

        with self.assertLogs(logger="absl", level="WARNING") as logs:
            results = training.train_and_evaluate(config, one_device())

        self.assertEqual(results["epoch"], 1)
        self.assertIn("cut.jpg", "\n".join(logs.output))
        for split in ("train", "validation"):
            counts = scalar_values(os.path.join(self.model_dir, split), "skipped_images")
            self.assertNotEmpty(counts, split)
            self.assertGreaterEqual(counts[-1], 3, split)

    def test_strict_decoding_names_the_file(self):
        self._add_bad_files()
        config = small_config(self.data_dir, self.model_dir, num_epochs=1, strict_decoding=True)

        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "Invalid image file.*(broken|empty|cut).jpg"
        ):
            training.train_and_evaluate(config, one_device())

    def test_strict_decoding_error_is_one_line_from_the_command(self):
        self._add_bad_files()

        result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.train", f"--data_dir={self.data_dir}",
             f"--model_dir={self.model_dir}", "--strict_decoding", "--global_batch_size=4",
             "--num_epochs=1", "--steps_per_epoch=1", "--image_size=67", "--resize_size=67",
             "--noexport"],
            capture_output=True, text=True, check=False,
        )

        self.assertNotEqual(result.returncode, 0)
        last_line = result.stderr.strip().splitlines()[-1]
        self.assertRegex(
            last_line, r"^error: Invalid image file in .* \((truncated JPEG|empty file|not a "
            r"JPEG)[^)]*\): .*(broken|empty|cut)\.jpg\. Remove or re-encode it"
        )
        self.assertNotIn("Traceback", result.stderr)

if __name__ == "__main__":
    absltest.main()
