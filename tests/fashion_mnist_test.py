"""Trains on real Fashion-MNIST photos through the command-line entry points."""

import gzip
import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import pytest
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = "T-shirt_top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle_boot"
NUM_TRAIN = 3072
NUM_VALIDATION = 1000


def copy_idx_subset(source, destination, count):
    """Copies the first `count` items of a gzipped IDX file, header adjusted."""
    with gzip.open(source, "rb") as file:
        data = file.read()
    num_dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims)]
    item_size = int(np.prod(shape[1:]))
    offset = 4 + 4 * num_dims
    header = data[:4] + count.to_bytes(4, "big") + data[8:offset]
    with gzip.open(destination, "wb") as file:
        file.write(header + data[offset : offset + count * item_size])


def run_module(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, cwd=REPO_ROOT, check=True,
    )


@pytest.mark.slow
class FashionMnistTest(tf.test.TestCase):

    def test_demo_preset_learns_real_photos(self):
        if not os.path.isdir(FASHION_MNIST_DIR):
            self.fail(f"{FASHION_MNIST_DIR} is missing: run 'make install' or "
                      "'apt-get install dataset-fashion-mnist'.")
        idx_dir = self.create_tempdir().full_path
        for prefix, count in (("train", NUM_TRAIN), ("t10k", NUM_VALIDATION)):
            for kind in ("images-idx3", "labels-idx1"):
                name = f"{prefix}-{kind}-ubyte.gz"
                copy_idx_subset(os.path.join(FASHION_MNIST_DIR, name), os.path.join(idx_dir, name), count)
        data_dir = os.path.join(self.create_tempdir().full_path, "fashion_mnist")
        model_dir = os.path.join(self.create_tempdir().full_path, "run")

        run_module("alexnet_tf.idx_to_folders", f"--idx_dir={idx_dir}",
                   f"--output_dir={data_dir}", f"--class_names={CLASS_NAMES}")
        # 24 steps of 128 images are one pass over the subset.
        run_module("alexnet_tf.train", "--flagfile=flags/demo.cfg", f"--data_dir={data_dir}",
                   f"--model_dir={model_dir}", "--num_epochs=3", "--lr_drop_epochs=")
        with open(os.path.join(model_dir, "eval_results.json")) as file:
            results = json.load(file)
        sample = os.path.join(data_dir, "validation", "Trouser")
        images = sorted(os.path.join(sample, name) for name in os.listdir(sample))[:3]
        predictions = run_module("alexnet_tf.predict", f"--saved_model={model_dir}/export", *images)

        self.assertEqual(results["epoch"], 3)
        # Chance is 0.1; three short epochs on 3,072 photos reach about 0.7.
        self.assertGreater(results["top_1_accuracy"], 0.5)
        self.assertGreater(results["top_5_accuracy"], 0.9)
        lines = predictions.stdout.strip().splitlines()
        self.assertLen(lines, 3)
        for line, path in zip(lines, images):
            self.assertTrue(line.startswith(f"{path}: "), line)


if __name__ == "__main__":
    absltest.main()
