"""Tests of the throughput benchmark: the measuring function and the entry point."""

import os
import re
import shutil
import subprocess
import sys
import time

from absl.testing import absltest
import tensorflow as tf

from alexnet_tf import benchmark
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


def _run_benchmark(*args):
    command = [sys.executable, "-m", "alexnet_tf.benchmark", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


class EntryPointTest(absltest.TestCase):

    def test_input_mode_prints_median_rate(self):
        root = self.create_tempdir().full_path
        for class_name, photos in (("cats", sample_images.REAL_PHOTOS[:3]),
                                   ("scenes", sample_images.REAL_PHOTOS[3:])):
            folder = os.path.join(root, "train", class_name)
            os.makedirs(folder)
            for photo in photos:
                shutil.copy(photo, folder)

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


if __name__ == "__main__":
    absltest.main()
