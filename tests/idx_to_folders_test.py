"""Tests of writing an IDX data set as a folder tree."""

import gzip
import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from alexnet_tf import idx_to_folders
from alexnet_tf.data import image_folder


def write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(
        size.to_bytes(4, "big") for size in array.shape
    )
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


class IdxToFoldersTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.idx_dir = self.create_tempdir().full_path
        rng = np.random.default_rng(0)
        self.train_images = rng.integers(0, 256, (6, 5, 4))
        self.validation_images = rng.integers(0, 256, (3, 5, 4))
        write_idx(os.path.join(self.idx_dir, "train-images-idx3-ubyte.gz"), self.train_images, 2051)
        write_idx(os.path.join(self.idx_dir, "train-labels-idx1-ubyte.gz"),
                  np.array([0, 1, 2, 0, 1, 2]), 2049)
        write_idx(os.path.join(self.idx_dir, "t10k-images-idx3-ubyte.gz"),
                  self.validation_images, 2051)
        write_idx(os.path.join(self.idx_dir, "t10k-labels-idx1-ubyte.gz"), np.array([2, 1, 0]), 2049)
        self.output_dir = os.path.join(self.create_tempdir().full_path, "tree")

    def test_writes_tree_that_training_reads(self):
        counts = idx_to_folders.convert(self.idx_dir, self.output_dir, ["shirt", "bag", "boot"])

        self.assertEqual(counts, {"train": 6, "validation": 3})
        train = image_folder.list_images(self.output_dir, image_folder.TRAIN_SPLIT)
        self.assertEqual(train.class_names, ("bag", "boot", "shirt"))
        self.assertLen(train, 6)
        first_shirt = os.path.join(self.output_dir, "train", "shirt", "00000.png")
        decoded = tf.io.decode_png(tf.io.read_file(first_shirt))[..., 0]
        self.assertAllEqual(decoded, self.train_images[0])

    def test_second_run_keeps_the_tree(self):
        idx_to_folders.convert(self.idx_dir, self.output_dir, ["a", "b", "c"])
        marker = os.path.join(self.output_dir, "train", "a", "00000.png")
        modified = os.path.getmtime(marker)

        idx_to_folders.convert(self.idx_dir, self.output_dir, ["a", "b", "c"])

        self.assertEqual(os.path.getmtime(marker), modified)

    def test_existing_other_folder_is_not_overwritten(self):
        os.makedirs(self.output_dir)
        with open(os.path.join(self.output_dir, "mine.txt"), "w") as file:
            file.write("keep")

        with self.assertRaisesRegex(FileExistsError, "already exists"):
            idx_to_folders.convert(self.idx_dir, self.output_dir)

        with open(os.path.join(self.output_dir, "mine.txt")) as file:
            self.assertEqual(file.read(), "keep")

    def test_too_few_class_names(self):
        with self.assertRaisesRegex(ValueError, "Expected 3 distinct class names"):
            idx_to_folders.convert(self.idx_dir, self.output_dir, ["a", "b"])

    def test_truncated_file_is_named(self):
        path = os.path.join(self.idx_dir, "t10k-images-idx3-ubyte.gz")
        with gzip.open(path, "rb") as file:
            data = file.read()
        with gzip.open(path, "wb") as file:
            file.write(data[:-7])

        with self.assertRaisesRegex(ValueError, "t10k-images-idx3-ubyte.gz.*truncated"):
            idx_to_folders.convert(self.idx_dir, self.output_dir)

    def test_missing_files_suggest_the_debian_package(self):
        with self.assertRaisesRegex(FileNotFoundError, "dataset-fashion-mnist"):
            idx_to_folders.convert(self.create_tempdir().full_path, self.output_dir)


if __name__ == "__main__":
    absltest.main()
