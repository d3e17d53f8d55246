"""Tests of the throughput benchmark: the measuring function and the entry point."""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time

from absl.testing import absltest
import tensorflow as tf

from alexnet_tf import benchmark
from alexnet_tf import distribution
import sample_images


class MeasureImagesPerSecondTest(tf.test.TestCase):

    def test_result_on_tf_dataset(self):
        dataset = tf.data.Dataset.range(1000).batch(4)

        result = benchmark.measure_images_per_second(
            dataset, batch_size=4, warmup_batches=2, num_windows=3, window_batches=5
        )

        self.assertLen(result["window_rates"], 3)
        self.assertGreater(result["min"], 0)
        self.assertEqual(result["min"], min(result["window_rates"]))
        self.assertEqual(result["max"], max(result["window_rates"]))
        self.assertBetween(result["median"], result["min"], result["max"])
        self.assertBetween(result["median"], result["q1"], result["q3"])
        self.assertEqual(result["batch_size"], 4)
        self.assertEqual(result["window_batches"], 5)
        self.assertGreaterEqual(result["cpu_ms_per_image"], 0)
        self.assertGreaterEqual(result["cores_used"], 0)

    def test_cpu_time_per_image_from_clock(self):
        # The clock reads 0 before the windows and 0.5 after them: 0.5 s of CPU
        # for 3 windows of 2 batches of 10 images.
        readings = iter([0.0, 0.5])

        result = benchmark.measure_images_per_second(
            tf.data.Dataset.range(100).batch(10), batch_size=10, warmup_batches=1,
            num_windows=3, window_batches=2, cpu_clock=lambda: next(readings),
        )

        self.assertAlmostEqual(result["cpu_ms_per_image"], 500 / 60)

    def test_draws_exactly_warmup_and_windows(self):
        drawn = []

        def batches():
            while True:
                drawn.append(1)
                yield [0] * 8

        benchmark.measure_images_per_second(
            batches(), batch_size=8, warmup_batches=3, num_windows=4, window_batches=2
        )

        self.assertLen(drawn, 3 + 4 * 2)

    def test_rate_is_bounded_by_batch_time(self):
        # Each batch of 8 takes at least 20 ms, so no window can exceed 400/s;
        # a busy machine only lowers the rate.
        def slow_batches():
            while True:
                time.sleep(0.02)
                yield [0] * 8

        result = benchmark.measure_images_per_second(
            slow_batches(), batch_size=8, warmup_batches=0, num_windows=2, window_batches=3
        )

        self.assertLessEqual(result["max"], 400.0)

    def test_short_dataset_names_counts(self):
        dataset = tf.data.Dataset.range(6).batch(2)

        with self.assertRaisesRegex(ValueError, "ended after 3 batches.*need 5"):
            benchmark.measure_images_per_second(
                dataset, batch_size=2, warmup_batches=1, num_windows=2, window_batches=2
            )

    def test_invalid_counts_name_argument(self):
        for name, value in (("batch_size", 0), ("warmup_batches", -1), ("num_windows", 0),
                            ("window_batches", 0)):
            kwargs = {"batch_size": 2, "warmup_batches": 0, "num_windows": 1,
                      "window_batches": 1}
            kwargs[name] = value
            with self.assertRaisesRegex(ValueError, f"{name} must be at least"):
                benchmark.measure_images_per_second(tf.data.Dataset.range(4), **kwargs)

    def test_format_rates_names_median_and_spread(self):
        result = benchmark.summarize_rates([100.0, 300.0, 200.0])
        result.update(batch_size=8, warmup_batches=1, num_windows=3, window_batches=2,
                      cpu_ms_per_image=4.25, cores_used=1.5)

        text = benchmark.format_rates(result)

        self.assertIn("median 200.0 images/s", text)
        self.assertIn("min 100.0", text)
        self.assertIn("max 300.0", text)
        self.assertIn("150.0 to 250.0", text)
        self.assertIn("4.25 ms of CPU per image", text)


def _start_benchmark(*args):
    command = [sys.executable, "-m", "alexnet_tf.benchmark", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


def _finish(process):
    """Waits for a process of `_start_benchmark`; returns its exit code and output."""
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _run_benchmark(*args):
    return _finish(_start_benchmark(*args))


def _write_tree(root):
    """Writes two classes of real photos under root/train/ and returns root."""
    for class_name, photos in (("cats", sample_images.REAL_PHOTOS[:3]),
                               ("scenes", sample_images.REAL_PHOTOS[3:])):
        folder = os.path.join(root, "train", class_name)
        os.makedirs(folder)
        for photo in photos:
            shutil.copy(photo, folder)
    return root


# The smallest model that runs every layer: the paper's variant at its minimum
# input side, whose 1x1 pool5 output keeps fc6 small, with few classes.
_TINY_MODEL = ("--variant=paper", "--image_size=67", "--num_classes=5",
               "--global_batch_size=4")
_TINY_STEPS = ("--warmup_batches=1", "--num_windows=2", "--window_batches=2")


class EntryPointTest(absltest.TestCase):

    def test_input_mode_prints_median_rate(self):
        root = _write_tree(self.create_tempdir().full_path)

        completed = _run_benchmark(
            "--mode=input", "--dataset=folder", f"--data_dir={root}",
            "--global_batch_size=4", "--image_size=67", "--resize_size=80",
            "--warmup_batches=1", "--num_windows=2", "--window_batches=2",
        )

        self.assertEqual(completed.returncode, 0, completed.stderr[-2000:])
        self.assertRegex(
            completed.stdout, r"input folder .*: median \d+\.\d images/s, min \d+\.\d, max "
        )
        self.assertRegex(completed.stdout, r"over 2 windows of 2 batches of 4")

    def test_missing_data_dir_is_one_line_error(self):
        missing = os.path.join(self.create_tempdir().full_path, "nowhere")

        completed = _run_benchmark("--mode=input", f"--data_dir={missing}")

        self.assertNotEqual(completed.returncode, 0)
        self.assertRegex(
            completed.stderr, re.escape(f"error: Data directory not found: '{missing}'")
        )
        self.assertNotIn("Traceback", completed.stderr)

    def test_train_synthetic_writes_json(self):
        output = os.path.join(self.create_tempdir().full_path, "train.json")

        completed = _run_benchmark(
            "--mode=train", *_TINY_MODEL, *_TINY_STEPS, f"--output_json={output}"
        )

        self.assertEqual(completed.returncode, 0, completed.stderr[-2000:])
        self.assertRegex(completed.stdout, r"^train synthetic paper float32 67px, "
                         r"jit_compile=False, .*: median \d+\.\d images/s")
        with open(output) as file:
            written = json.load(file)
        self.assertGreater(written["result"]["median"], 0)
        self.assertEqual(written["result"]["steps_run"], 1 + 2 * 2)
        self.assertEqual(written["settings"]["data"], "synthetic")
        self.assertEqual(written["settings"]["dtype_policy"], "float32")

    def test_infer_real_reads_folder(self):
        root = _write_tree(self.create_tempdir().full_path)

        completed = _run_benchmark(
            "--mode=infer", "--data=real", "--dataset=folder", f"--data_dir={root}",
            "--resize_size=72", *_TINY_MODEL, *_TINY_STEPS,
        )

        self.assertEqual(completed.returncode, 0, completed.stderr[-2000:])
        self.assertRegex(completed.stdout, rf"^infer real folder {re.escape(root)} "
                         r"paper float32 67px.*: median \d+\.\d images/s")
        self.assertRegex(completed.stdout, r"over 2 windows of 2 batches of 4 after 1 warm-up")

    def test_output_json_is_not_overwritten(self):
        output = os.path.join(self.create_tempdir().full_path, "result.json")
        with open(output, "w") as file:
            file.write("kept")

        completed = _run_benchmark("--mode=train", *_TINY_MODEL, f"--output_json={output}")

        self.assertNotEqual(completed.returncode, 0)
        self.assertIn(f"error: --output_json={output} exists. Pass --overwrite",
                      completed.stderr)
        with open(output) as file:
            self.assertEqual(file.read(), "kept")

    def test_bad_flag_combinations_are_one_line_errors(self):
        cases = (
            (("--mode=train", "--data=real"), "error: --data_dir is missing"),
            (("--mode=train", "--variant=paper", "--image_size=66"),
             "error: Expected image_size >= 67 for variant='paper'"),
            (("--mode=infer", "--data_dir=/tmp"),
             "error: Flags without effect here: --data_dir. They apply only to --data=real"),
            (("--mode=input", "--data=synthetic"), "error: --mode=input measures the input "
             "pipeline"),
            (("--mode=train", "--data=real", "--data_dir=/tmp", "--num_cpu_devices=2",
              "--distribution_strategy=mirrored", "--steps_per_execution=2"),
             "error: --steps_per_execution=2 with --data=real and 2 replicas fails"),
            (("--mode=train", "--num_cpu_devices=2"),
             "error: --num_cpu_devices=2 applies only to --distribution_strategy=mirrored"),
        )
        # Started together, because each spends seconds importing TensorFlow.
        processes = [_start_benchmark(*args) for args, _ in cases]

        for (args, message), process in zip(cases, processes):
            with self.subTest(args=args):
                completed = _finish(process)

                self.assertNotEqual(completed.returncode, 0)
                self.assertIn(message, completed.stderr)
                self.assertNotIn("Traceback", completed.stderr)


class ModelModeTest(tf.test.TestCase):

    def _measure(self, strategy, mode, steps_per_execution=1):
        with strategy.scope():
            model = benchmark.build_model(
                mode, "paper", num_classes=5, image_size=67, global_batch_size=4,
                steps_per_execution=steps_per_execution,
            )
        per_replica = 4 // strategy.num_replicas_in_sync
        batches = itertools.repeat(benchmark.synthetic_batch(strategy, per_replica, 67, 5))
        return benchmark.measure_model(
            model, mode, batches, global_batch_size=4, warmup_steps=2, num_windows=2,
            window_steps=2,
        )

    def test_train_on_two_replicas_counts_steps(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])

        result = self._measure(strategy, benchmark.TRAIN_MODE)

        self.assertEqual(result["steps_run"], 2 + 2 * 2)
        self.assertGreater(result["min"], 0)
        self.assertLen(result["window_rates"], 2)
        self.assertEqual(result["batch_size"], 4)
        self.assertEqual(result["window_batches"], 2)

    def test_infer_in_pairs_counts_images(self):
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")

        result = self._measure(strategy, benchmark.INFER_MODE, steps_per_execution=2)

        self.assertEqual(result["steps_run"], 2 + 2 * 2)
        self.assertEqual(result["steps_per_execution"], 2)
        self.assertGreater(result["min"], 0)

    def test_steps_must_fill_executions(self):
        model = benchmark.build_model(
            benchmark.INFER_MODE, "paper", 5, 67, 4, steps_per_execution=2
        )

        with self.assertRaisesRegex(ValueError, "multiples of steps_per_execution=2.*"
                                    "warmup_steps=3, window_steps=2"):
            benchmark.measure_model(model, benchmark.INFER_MODE, iter([]), 4, 3, 1, 2)

    def test_synthetic_batch_per_replica(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])

        images, labels = benchmark.synthetic_batch(strategy, 3, 63, num_classes=5)

        first, second = strategy.experimental_local_results(images)
        self.assertEqual(first.shape, (3, 63, 63, 3))
        self.assertEqual(first.dtype, tf.float32)
        self.assertNotAllClose(first, second)
        for replica_labels in strategy.experimental_local_results(labels):
            self.assertEqual(replica_labels.dtype, tf.int32)
            self.assertAllInRange(replica_labels, 0, 4)


if __name__ == "__main__":
    absltest.main()
