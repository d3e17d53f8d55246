"""Tests of converting a folder tree into TFRecord shards."""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf

from alexnet_tf.data import build_tfrecords
from alexnet_tf.data import tfrecords
import sample_images

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photo_pixels(index=0, size=(120, 160)):
    """Returns a uint8 RGB crop of china.jpg or flower.jpg."""
    pixels = np.array(Image.open(sample_images.REAL_PHOTOS[index]).convert("RGB"))
    return pixels[100 : 100 + size[0], 200 : 200 + size[1]]


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)
    return path


def write_odd_tree(root):
    """Writes a two-class tree of real photos and odd files.

    Returns:
        Dict of a short role name to the file's path.
    """
    china = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])
    flower = sample_images.read_bytes(sample_images.REAL_PHOTOS[1])
    deep_pixels = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30)
    files = {
        "rgb_jpeg": ("train/cat/china.jpg", china),
        "png": ("train/cat/chelsea.png", sample_images.read_bytes(sample_images.REAL_PHOTOS[2])),
        "png_named_jpeg": ("train/cat/camera.JPEG",
                           sample_images.read_bytes(sample_images.REAL_PHOTOS[3])),
        "cmyk_jpeg": ("train/cat/cmyk.jpg",
                      sample_images.encode(photo_pixels(0), "JPEG", mode="CMYK")),
        "empty": ("train/cat/empty.jpg", b""),
        "rgb_jpeg_2": ("train/dog/flower.jpg", flower),
        "rgba_png": ("train/dog/logo.png",
                     sample_images.read_bytes(sample_images.REAL_PHOTOS[4])),
        "grayscale_jpeg": ("train/dog/gray.jpg",
                           sample_images.encode(photo_pixels(1), "JPEG", mode="L")),
        "png_16_bit": ("train/dog/deep.png", sample_images.encode(deep_pixels, "PNG")),
        "truncated_jpeg": ("train/dog/truncated.jpg", flower[: len(flower) // 2]),
        "text": ("train/dog/notes.jpg", b"not an image, just notes\n"),
        "validation_cat": ("validation/cat/small.jpg",
                           sample_images.encode(photo_pixels(0, (48, 64)), "JPEG")),
        "validation_dog": ("validation/dog/small.jpg",
                           sample_images.encode(photo_pixels(1, (48, 64)), "JPEG")),
    }
    return {role: write_file(os.path.join(root, relative_path), data)
            for role, (relative_path, data) in files.items()}


def read_examples(output_dir, split):
    """Returns {image/filename: tf.train.Example} of every shard of a split."""
    examples = {}
    for path in sorted(glob.glob(os.path.join(output_dir, f"{split}-*"))):
        for serialized in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(serialized.numpy())
            name = example.features.feature["image/filename"].bytes_list.value[0].decode()
            examples[name] = example
    return examples


def feature_value(example, key):
    feature = example.features.feature[key]
    return (feature.bytes_list.value or feature.int64_list.value)[0]


def read_folder(directory):
    return {name: sample_images.read_bytes(os.path.join(directory, name))
            for name in sorted(os.listdir(directory))}


class BuildTfrecordsTest(tf.test.TestCase, parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp()
        cls.data_dir = os.path.join(cls.root, "tree")
        cls.output_dir = os.path.join(cls.root, "shards")
        cls.paths = write_odd_tree(cls.data_dir)
        cls.report = build_tfrecords.build_tfrecords(
            cls.data_dir, cls.output_dir, num_train_shards=3, num_validation_shards=2,
            num_workers=1)
        cls.train = read_examples(cls.output_dir, "train")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root)
        super().tearDownClass()

    def test_report_counts_and_names_files(self):
        train = self.report["train"]

        self.assertEqual(train["written"], 8)
        self.assertEqual(train["converted"]["png"]["count"], 4)
        self.assertEqual(train["converted"]["png"]["first_files"], sorted(
            self.paths[role] for role in ("png", "png_named_jpeg", "rgba_png", "png_16_bit")))
        self.assertEqual(train["converted"]["cmyk jpeg"],
                         {"count": 1, "first_files": [self.paths["cmyk_jpeg"]]})
        self.assertEqual(train["converted"]["grayscale jpeg"],
                         {"count": 1, "first_files": [self.paths["grayscale_jpeg"]]})
        self.assertEqual(train["skipped"], {
            build_tfrecords.SKIP_EMPTY: {"count": 1, "first_files": [self.paths["empty"]]},
            build_tfrecords.SKIP_NOT_AN_IMAGE: {"count": 1,
                                                "first_files": [self.paths["text"]]},
            build_tfrecords.SKIP_UNDECODABLE: {"count": 1,
                                               "first_files": [self.paths["truncated_jpeg"]]},
        })
        self.assertEqual(self.report["validation"],
                         {"written": 2, "converted": {}, "skipped": {}})

    def test_info_file_contains_counts_and_report(self):
        with open(os.path.join(self.output_dir, "dataset_info.json")) as file:
            info = json.load(file)

        self.assertTrue(info["complete"])
        self.assertEqual(info["class_names"], ["cat", "dog"])
        self.assertEqual(info["label_offset"], 0)
        self.assertEqual(info["num_examples"], {"train": 8, "validation": 2})
        self.assertEqual(info["num_shards"], {"train": 3, "validation": 2})
        self.assertEqual(info["report"], self.report)

    def test_skipped_files_are_absent(self):
        self.assertCountEqual(self.train, [
            "train/cat/china.jpg", "train/cat/chelsea.png", "train/cat/camera.JPEG",
            "train/cat/cmyk.jpg", "train/dog/flower.jpg", "train/dog/logo.png",
            "train/dog/gray.jpg", "train/dog/deep.png",
        ])

    def test_rgb_jpegs_are_stored_unchanged(self):
        for role, name in (("rgb_jpeg", "train/cat/china.jpg"),
                           ("rgb_jpeg_2", "train/dog/flower.jpg")):
            stored = feature_value(self.train[name], "image/encoded")
            self.assertEqual(stored, sample_images.read_bytes(self.paths[role]), name)

    @parameterized.parameters("train/cat/chelsea.png", "train/cat/camera.JPEG",
                              "train/cat/cmyk.jpg", "train/dog/logo.png", "train/dog/gray.jpg",
                              "train/dog/deep.png")
    def test_converted_files_are_rgb_jpegs(self, name):
        example = self.train[name]
        stored = feature_value(example, "image/encoded")
        original = sample_images.read_bytes(os.path.join(self.data_dir, name))

        self.assertStartsWith(stored, b"\xff\xd8\xff")
        self.assertEqual(build_tfrecords._jpeg_num_components(stored), 3)
        decoded = tf.io.decode_jpeg(stored)
        expected = tf.io.decode_image(original, channels=3, expand_animations=False)
        self.assertEqual(decoded.shape, expected.shape)
        self.assertEqual(feature_value(example, "image/height"), expected.shape[0])
        self.assertEqual(feature_value(example, "image/width"), expected.shape[1])
        difference = tf.reduce_mean(tf.abs(tf.cast(decoded, tf.float32)
                                           - tf.cast(expected, tf.float32)))
        self.assertLess(float(difference), 3.0)

    def test_cmyk_jpeg_keeps_its_colours(self):
        stored = feature_value(self.train["train/cat/cmyk.jpg"], "image/encoded")

        decoded = tf.cast(tf.io.decode_jpeg(stored), tf.float32)

        # Pillow's CMYK JPEG alone is about 5 levels off; inverted or swapped
        # channels would be off by tens.
        difference = tf.reduce_mean(tf.abs(decoded - photo_pixels(0).astype(np.float32)))
        self.assertLess(float(difference), 10.0)

    def test_labels_synsets_and_common_features(self):
        for name, example in self.train.items():
            class_name = name.split("/")[1]
            self.assertEqual(feature_value(example, "image/class/label"),
                             ["cat", "dog"].index(class_name), name)
            self.assertEqual(feature_value(example, "image/class/synset"), class_name.encode(),
                             name)
            self.assertEqual(feature_value(example, "image/format"), b"JPEG")
            self.assertEqual(feature_value(example, "image/colorspace"), b"RGB")
            self.assertEqual(feature_value(example, "image/channels"), 3)

    def test_reader_yields_the_folder_bytes(self):
        source = tfrecords.open_tfrecords(self.output_dir, "validation")

        read = {record["name"].numpy().decode(): (int(record["label"]), record["image"].numpy())
                for record in source.read()}

        self.assertEqual(source.class_names, ("cat", "dog"))
        self.assertEqual(source.num_examples, 2)
        self.assertEqual(read, {
            "validation/cat/small.jpg": (0, sample_images.read_bytes(self.paths["validation_cat"])),
            "validation/dog/small.jpg": (1, sample_images.read_bytes(self.paths["validation_dog"])),
        })

    def test_no_partial_files_remain(self):
        self.assertEqual(sorted(os.listdir(self.output_dir)), [
            "dataset_info.json", "train-00000-of-00003", "train-00001-of-00003",
            "train-00002-of-00003", "validation-00000-of-00002", "validation-00001-of-00002",
        ])

    def test_existing_shards_are_not_overwritten(self):
        before = read_folder(self.output_dir)

        with self.assertRaisesRegex(FileExistsError,
                                    f"{self.output_dir}.*already contains TFRecord shards.*"
                                    "Choose another --output_dir or delete"):
            build_tfrecords.build_tfrecords(self.data_dir, self.output_dir, 1, 1, 1)

        self.assertEqual(read_folder(self.output_dir), before)


class ShardingTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.data_dir = self.create_tempdir().full_path
        sample_images.write_color_tree(self.data_dir, num_train=6, num_validation=1, size=16)

    def test_classes_mix_across_shards(self):
        output_dir = os.path.join(self.create_tempdir().full_path, "shards")

        build_tfrecords.build_tfrecords(self.data_dir, output_dir, num_train_shards=3,
                                        num_validation_shards=1, num_workers=1)

        # In file order each of the 3 shards would hold one class of 6 images.
        for index in range(3):
            path = os.path.join(output_dir, f"train-{index:05d}-of-00003")
            labels = {feature_value(tf.train.Example.FromString(record.numpy()),
                                    "image/class/label")
                      for record in tf.data.TFRecordDataset(path)}
            self.assertGreater(len(labels), 1, path)

    def test_more_shards_than_images_are_reduced(self):
        output_dir = os.path.join(self.create_tempdir().full_path, "shards")

        with self.assertLogs(level="WARNING") as logs:
            build_tfrecords.build_tfrecords(self.data_dir, output_dir, num_train_shards=2,
                                            num_validation_shards=10, num_workers=1)

        self.assertTrue(any("10 validation shards requested but only 3 images" in line
                            for line in logs.output), logs.output)
        self.assertLen(glob.glob(os.path.join(output_dir, "validation-*-of-00003")), 3)

    def test_folder_with_other_files_is_used(self):
        output_dir = self.create_tempdir().full_path
        write_file(os.path.join(output_dir, "notes.txt"), b"keep")

        build_tfrecords.build_tfrecords(self.data_dir, output_dir, 1, 1, num_workers=1)

        self.assertEqual(sample_images.read_bytes(os.path.join(output_dir, "notes.txt")),
                         b"keep")
        self.assertTrue(os.path.exists(os.path.join(output_dir, "train-00000-of-00001")))

    def test_entry_point_matches_library_with_two_workers(self):
        library_dir = os.path.join(self.create_tempdir().full_path, "library")
        command_dir = os.path.join(self.create_tempdir().full_path, "command")
        build_tfrecords.build_tfrecords(self.data_dir, library_dir, num_train_shards=4,
                                        num_validation_shards=2, num_workers=1)

        command = [sys.executable, "-m", "alexnet_tf.data.build_tfrecords",
                   f"--data_dir={self.data_dir}", f"--output_dir={command_dir}",
                   "--num_train_shards=4", "--num_validation_shards=2", "--num_workers=2"]
        completed = subprocess.run(command, cwd=_REPOSITORY, capture_output=True, text=True,
                                   check=False)

        self.assertEqual(completed.returncode, 0, completed.stderr[-3000:])
        self.assertIn("with 2 workers", completed.stderr)
        self.assertEqual(read_folder(command_dir), read_folder(library_dir))

        again = subprocess.run(command, cwd=_REPOSITORY, capture_output=True, text=True,
                               check=False)

        self.assertEqual(again.returncode, 1)
        last_line = again.stderr.strip().splitlines()[-1]
        self.assertStartsWith(last_line, f"error: Output folder '{command_dir}' already "
                              "contains TFRecord shards")
        self.assertNotIn("Traceback", again.stderr)


class PrepareImageTest(parameterized.TestCase):

    @parameterized.parameters(0.2, 0.5, 0.9)
    def test_truncated_jpeg_is_skipped(self, fraction):
        for progressive in (False, True):
            data = sample_images.encode(photo_pixels(), "JPEG", progressive=progressive)

            with self.assertRaisesRegex(build_tfrecords.SkippedImage, "truncated"):
                build_tfrecords.prepare_image(data[: int(len(data) * fraction)])

    def test_jpeg_without_end_marker_is_skipped(self):
        data = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])

        with self.assertRaisesRegex(build_tfrecords.SkippedImage, "truncated"):
            build_tfrecords.prepare_image(data[:-2])

    @parameterized.parameters("GIF", "BMP")
    def test_gif_and_bmp_are_converted(self, image_format):
        data = sample_images.encode(photo_pixels(), image_format)

        jpeg, height, width, conversion = build_tfrecords.prepare_image(data)

        self.assertEqual(conversion, image_format.lower())
        self.assertEqual((height, width), (120, 160))
        self.assertStartsWith(jpeg, b"\xff\xd8\xff")



class FlatValidationTest(tf.test.TestCase):

    def test_label_file_labels_a_flat_validation_folder(self):
        root = self.create_tempdir().full_path
        jpeg = sample_images.encode(photo_pixels(0, (40, 50)), "JPEG")
        for class_name in ("n01", "n02"):
            write_file(os.path.join(root, "train", class_name, "a.JPEG"), jpeg)
        for index in range(3):
            write_file(os.path.join(root, "val", f"ILSVRC2012_val_{index + 1:08d}.JPEG"), jpeg)
        labels = write_file(os.path.join(root, "labels.txt"), b"n02\nn01\nn02\n")
        output_dir = os.path.join(self.create_tempdir().full_path, "shards")

        build_tfrecords.build_tfrecords(
            root, output_dir, num_train_shards=1, num_validation_shards=1, num_workers=1,
            validation_labels=labels,
        )

        examples = read_examples(output_dir, "validation")
        found = {os.path.basename(name): feature_value(example, "image/class/label")
                 for name, example in examples.items()}
        self.assertEqual(found, {"ILSVRC2012_val_00000001.JPEG": 1,
                                 "ILSVRC2012_val_00000002.JPEG": 0,
                                 "ILSVRC2012_val_00000003.JPEG": 1})

if __name__ == "__main__":
    absltest.main()
