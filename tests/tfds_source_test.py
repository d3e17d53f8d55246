"""Tests of reading TFDS image classification data sets as records.

A tiny data set of real photos is prepared on disk from a folder tree, once
with one record file per split and once with three, and registered TFDS data
sets are read through `tfds.testing.mock_data`. Nothing touches the network.
"""

import importlib
import os
import shutil
import socket
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from alexnet_tf import preprocessing
from alexnet_tf.data import records
from alexnet_tf.data import tfds_source
import sample_images

DATASET_NAME = "alexnet_tf_test_photos"
# Each class is crops of one real photo.
CLASS_PHOTOS = {
    "cat": sample_images.REAL_PHOTOS[2],
    "flower": sample_images.REAL_PHOTOS[1],
    "temple": sample_images.REAL_PHOTOS[0],
}
CLASS_NAMES = tuple(sorted(CLASS_PHOTOS))
SPLIT_SIZES = {"train": 3, "validation": 2}
IMAGE_WIDTH = 48
IMAGE_HEIGHT = 36


class AlexnetTfTestPhotos(tfds.core.GeneratorBasedBuilder):
    """Photos read from `<manual_dir>/<split>/<class>/<file>`, stored unchanged."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the photos in train/<class>/ and validation/<class>/."

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(dl_manager.manual_dir / split)
            for split in SPLIT_SIZES
        }

    def _generate_examples(self, split_dir):
        for class_dir in sorted(split_dir.iterdir()):
            for path in sorted(class_dir.iterdir()):
                yield path.name, {"image": path, "label": class_dir.name, "file_name": path.name}


def write_photo_tree(root):
    """Writes `root/<split>/<class>/<class>_<split>_<n>.{jpg,png}` crops of real photos.

    The third image of each class in a split is a PNG, the others are JPEGs.

    Returns:
        A dict from file name to the file's path.
    """
    paths = {}
    for class_name, photo_path in CLASS_PHOTOS.items():
        photo = Image.open(photo_path).convert("RGB")
        for split, count in SPLIT_SIZES.items():
            folder = os.path.join(root, split, class_name)
            os.makedirs(folder, exist_ok=True)
            for index in range(count):
                left = 30 * index + (split == "validation") * 15
                crop = photo.crop((left, 20, left + 240, 200)).resize((IMAGE_WIDTH, IMAGE_HEIGHT))
                image_format, extension = ("PNG", "png") if index == 2 else ("JPEG", "jpg")
                file_name = f"{class_name}_{split}_{index}.{extension}"
                path = os.path.join(folder, file_name)
                crop.save(path, format=image_format)
                paths[file_name] = path
    return paths


def write_split_metadata(data_dir, name, split_lengths):
    """Writes the metadata of a prepared TFDS data set without its record files.

    `tfds.testing.mock_data` with `MockPolicy.USE_FILES` reads the splits from
    this metadata and generates random examples for them.

    Args:
        data_dir: the TFDS data directory to write into.
        name: a registered TFDS name.
        split_lengths: dict from split name to the example count of each
            record file.
    """
    builder = tfds.builder(name, data_dir=data_dir)
    split_infos = [
        tfds.core.SplitInfo(
            name=split,
            shard_lengths=lengths,
            num_bytes=0,
            filename_template=tfds.core.ShardedFileTemplate(
                data_dir=builder.data_dir, dataset_name=builder.name, split=split,
                filetype_suffix="tfrecord",
            ),
        )
        for split, lengths in split_lengths.items()
    ]
    builder.info.set_splits(tfds.core.SplitDict(split_infos))
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)


def read_all(dataset):
    """Returns the records of a dataset as a list of dicts of NumPy values."""
    return [
        {key: value.numpy() for key, value in record.items()}
        for record in dataset
    ]


def read_names(dataset):
    return [record[records.NAME].numpy().decode() for record in dataset]


class PreparedDatasetTest(parameterized.TestCase, tf.test.TestCase):
    """Reads the photo data set prepared on disk."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tfds.disable_progress_bar()
        cls.root = tempfile.mkdtemp()
        cls.tree_dir = os.path.join(cls.root, "tree")
        cls.photo_paths = write_photo_tree(cls.tree_dir)

        # open_tfds prepares the data set with TFDS's default sharding, which
        # writes one record file per split for data this small.
        cls.one_file_dir = os.path.join(cls.root, "one_file")
        tfds_source.open_tfds(
            DATASET_NAME, "train", data_dir=cls.one_file_dir, manual_dir=cls.tree_dir
        )

        cls.three_files_dir = os.path.join(cls.root, "three_files")
        builder = tfds.builder(DATASET_NAME, data_dir=cls.three_files_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=cls.tree_dir, num_shards=3)
        )

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root)
        super().tearDownClass()

    def open(self, split="train", data_dir=None):
        return tfds_source.open_tfds(
            DATASET_NAME, split, data_dir=data_dir or self.one_file_dir, download=False
        )

    def test_record_files_per_split(self):
        for data_dir, num_files in ((self.one_file_dir, 1), (self.three_files_dir, 3)):
            splits = tfds.builder(DATASET_NAME, data_dir=data_dir).info.splits
            self.assertEqual(splits["train"].num_shards, num_files)
            self.assertEqual(splits["validation"].num_shards, num_files)

    def test_source_describes_split(self):
        for split, count in SPLIT_SIZES.items():
            source = self.open(split)

            self.assertEqual(source.num_examples, count * len(CLASS_NAMES))
            self.assertEqual(source.class_names, CLASS_NAMES)
            self.assertIn(f"{DATASET_NAME}/1.0.0 split {split}", source.description)
            self.assertFalse(source.fully_shuffled)

    def test_records_hold_original_file_bytes(self):
        read = read_all(self.open("validation").read())

        expected_names = [name for name in self.photo_paths if "_validation_" in name]
        self.assertCountEqual([record[records.NAME].decode() for record in read], expected_names)
        for record in read:
            name = record[records.NAME].decode()
            original = sample_images.read_bytes(self.photo_paths[name])
            self.assertEqual(record[records.IMAGE], original)

    def test_png_bytes_are_kept_too(self):
        read = read_all(self.open("train").read())

        png_names = [record[records.NAME].decode() for record in read
                     if record[records.IMAGE].startswith(b"\x89PNG")]
        self.assertCountEqual(png_names, [f"{name}_train_2.png" for name in CLASS_NAMES])

    def test_labels_follow_class_folders(self):
        for record in read_all(self.open("train").read()):
            class_name = record[records.NAME].decode().split("_")[0]
            self.assertEqual(record[records.LABEL], CLASS_NAMES.index(class_name))
            self.assertEqual(record[records.LABEL].dtype, np.int32)

    def test_images_decode_to_rgb(self):
        for record in self.open("train").read():
            image = preprocessing.decode_image(record[records.IMAGE])
            self.assertEqual(image.shape, (IMAGE_HEIGHT, IMAGE_WIDTH, 3))

    @parameterized.product(files=("one_file", "three_files"), num_pipelines=(2, 4, 10))
    def test_input_pipelines_read_each_example_once(self, files, num_pipelines):
        source = self.open("train", data_dir=getattr(self, f"{files}_dir"))

        names = []
        sizes = []
        for pipeline_id in range(num_pipelines):
            context = tf.distribute.InputContext(
                num_input_pipelines=num_pipelines, input_pipeline_id=pipeline_id,
                num_replicas_in_sync=num_pipelines,
            )
            pipeline_names = read_names(source.read(context, shuffle=True))
            names.extend(pipeline_names)
            sizes.append(len(pipeline_names))

        self.assertCountEqual(names, [name for name in self.photo_paths if "_train_" in name])
        self.assertLessEqual(max(sizes) - min(sizes), 1)

    def test_input_pipeline_turns_auto_sharding_off(self):
        source = self.open("train")
        context = tf.distribute.InputContext(2, 0, 2)

        sharded = source.read(context).options().experimental_distribute.auto_shard_policy
        whole = source.read().options().experimental_distribute.auto_shard_policy

        self.assertEqual(sharded, tf.data.experimental.AutoShardPolicy.OFF)
        self.assertEqual(whole, tf.data.experimental.AutoShardPolicy.AUTO)

    def test_shuffle_changes_order_and_keeps_set(self):
        dataset = self.open("train", data_dir=self.three_files_dir).read(shuffle=True, seed=7)

        orders = [tuple(read_names(dataset)) for _ in range(6)]

        self.assertGreater(len(set(orders)), 1)
        for order in orders:
            self.assertCountEqual(order, orders[0])

    def test_unshuffled_order_repeats(self):
        dataset = self.open("train", data_dir=self.three_files_dir).read()

        self.assertEqual(read_names(dataset), read_names(dataset))

    def test_split_slice(self):
        source = self.open("train[:4]")

        self.assertEqual(source.num_examples, 4)
        self.assertLen(read_names(source.read()), 4)

    def test_missing_split_lists_splits(self):
        with self.assertRaisesRegex(ValueError, r"'test'.*\['train', 'validation'\]"):
            self.open("test")

    def test_invalid_slice(self):
        with self.assertRaisesRegex(ValueError, r"'train\[:200%\]'.*valid slice"):
            self.open("train[:200%]")

    def test_empty_slice(self):
        with self.assertRaisesRegex(ValueError, r"'train\[5:2\]'.*no examples"):
            self.open("train[5:2]")

    def test_unprepared_without_download_names_fix(self):
        empty_dir = self.create_tempdir().full_path

        with self.assertRaisesRegex(
            FileNotFoundError, f"{DATASET_NAME}.*not prepared in {empty_dir}.*download=True"
        ):
            tfds_source.open_tfds(DATASET_NAME, "train", data_dir=empty_dir, download=False)

    def test_missing_manual_dir_gives_instructions(self):
        data_dir = self.create_tempdir().full_path
        missing = os.path.join(data_dir, "no_photos")

        with self.assertRaisesRegex(
            FileNotFoundError, f"(?s)manual directory {missing}.*train/<class>/"
        ):
            tfds_source.open_tfds(DATASET_NAME, "train", data_dir=data_dir, manual_dir=missing)

    def test_prepare_opens_no_network_connection(self):
        data_dir = self.create_tempdir().full_path

        with mock.patch.object(
            socket.socket, "connect", side_effect=OSError("network access in a test")
        ) as connect, mock.patch.object(socket, "getaddrinfo", wraps=socket.getaddrinfo) as lookup:
            source = tfds_source.open_tfds(
                DATASET_NAME, "validation", data_dir=data_dir, manual_dir=self.tree_dir
            )
            names = read_names(source.read())

        self.assertLen(names, source.num_examples)
        connect.assert_not_called()
        lookup.assert_not_called()


class MockDataTest(tf.test.TestCase):
    """Reads registered TFDS data sets whose examples `tfds.testing.mock_data` generates."""

    def setUp(self):
        super().setUp()
        self.metadata_dir = self.create_tempdir().full_path

    def mock_data(self, num_examples):
        return tfds.testing.mock_data(
            num_examples=num_examples,
            policy=tfds.testing.MockPolicy.USE_FILES,
            data_dir=self.metadata_dir,
        )

    def test_imagenet2012_records(self):
        write_split_metadata(
            self.metadata_dir, "imagenet2012", {"train": [3, 3], "validation": [5]}
        )
        expected_class_names = tuple(tfds.builder("imagenet2012").info.features["label"].names)

        with self.mock_data(num_examples=5):
            source = tfds_source.open_tfds("imagenet2012", "validation", download=False)
            read = read_all(source.read())
            builder = tfds.builder("imagenet2012")
            file_names = [
                example["file_name"].numpy()
                for example in builder.as_dataset(
                    split="validation", decoders={"image": tfds.decode.SkipDecoding()}
                )
            ]

        self.assertEqual(source.num_examples, 5)
        self.assertLen(source.class_names, 1000)
        self.assertEqual(source.class_names, expected_class_names)
        self.assertEqual(source.class_names[0], "n01440764")
        self.assertIn("imagenet2012/5.1.0 split validation", source.description)
        self.assertLen(read, 5)
        self.assertEqual([record[records.NAME] for record in read], file_names)
        for record in read:
            self.assertBetween(record[records.LABEL], 0, 999)
            image = preprocessing.decode_image(record[records.IMAGE])
            self.assertEqual(image.shape[-1], 3)
            self.assertTrue(record[records.IMAGE].startswith(b"\xff\xd8\xff"))

    def test_dataset_without_file_names_uses_tfds_ids(self):
        write_split_metadata(self.metadata_dir, "imagenette", {"train": [4], "validation": [2]})

        with self.mock_data(num_examples=4):
            source = tfds_source.open_tfds("imagenette", "train", download=False)
            names = read_names(source.read())

        self.assertLen(source.class_names, 10)
        self.assertLen(set(names), 4)
        for name in names:
            self.assertRegex(name, r"^imagenette-train\.tfrecord-\d{5}-of-\d{5}__\d+$")

    def test_validation_falls_back_to_test(self):
        write_split_metadata(self.metadata_dir, "cifar10", {"train": [6], "test": [3]})

        with self.mock_data(num_examples=3):
            source = tfds_source.open_tfds("cifar10", "validation", download=False)
            read = read_all(source.read())

        self.assertIn("split test", source.description)
        self.assertEqual(source.num_examples, 3)
        self.assertLen(source.class_names, 10)
        for record in read:
            image = preprocessing.decode_image(record[records.IMAGE])
            self.assertEqual(image.shape, (32, 32, 3))

    def test_no_validation_or_test_split(self):
        write_split_metadata(self.metadata_dir, "imagenette", {"train": [4]})

        with self.mock_data(num_examples=4):
            with self.assertRaisesRegex(ValueError, r"no 'validation' or 'test'.*'train\[90%:\]'"):
                tfds_source.open_tfds("imagenette", "validation", download=False)


class OpenErrorsTest(tf.test.TestCase):
    """Errors raised before anything is prepared or read."""

    def test_unknown_name_lists_close_matches(self):
        with self.assertRaisesRegex(ValueError, r"'imagenet2021' not found.*imagenet2012"):
            tfds_source.open_tfds("imagenet2021", "train", data_dir=self.create_tempdir().full_path)

    def test_unknown_name_says_how_to_list_names(self):
        with self.assertRaisesRegex(ValueError, r"'zzqqxx' not found.*list_builders"):
            tfds_source.open_tfds("zzqqxx", "train", data_dir=self.create_tempdir().full_path)

    def test_unknown_version(self):
        with self.assertRaisesRegex(ValueError, r"imagenet2012:9\.9\.9.*5\.1\.0"):
            tfds_source.open_tfds(
                "imagenet2012:9.9.9", "train", data_dir=self.create_tempdir().full_path
            )

    def test_not_image_classification(self):
        with self.assertRaisesRegex(ValueError, "coco.*not an image classification data set"):
            tfds_source.open_tfds("coco", "train", data_dir=self.create_tempdir().full_path)

    def test_imagenet_archives_missing_from_default_manual_dir(self):
        data_dir = self.create_tempdir().full_path
        manual_dir = os.path.join(data_dir, "downloads", "manual")

        with self.assertRaisesRegex(
            FileNotFoundError,
            f"ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar not found in the manual "
            f"directory {manual_dir}",
        ):
            tfds_source.open_tfds("imagenet2012", "train", data_dir=data_dir)

    def test_imagenet_validation_archive_missing(self):
        manual_dir = self.create_tempdir()
        manual_dir.create_file("ILSVRC2012_img_train.tar")

        with self.assertRaisesRegex(
            FileNotFoundError, r": ILSVRC2012_img_val\.tar not found.*image-net\.org"
        ):
            tfds_source.open_tfds(
                "imagenet2012", "train", data_dir=self.create_tempdir().full_path,
                manual_dir=manual_dir.full_path,
            )


class FindImageAndLabelTest(tf.test.TestCase):

    def make_info(self, features, supervised_keys=None):
        builder = tfds.builder(DATASET_NAME, data_dir=self.create_tempdir().full_path)
        return tfds.core.DatasetInfo(
            builder=builder,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=supervised_keys,
        )

    def test_supervised_keys_take_precedence(self):
        info = self.make_info(
            {"thumbnail": tfds.features.Image(), "photo": tfds.features.Image(),
             "coarse": tfds.features.ClassLabel(num_classes=2),
             "fine": tfds.features.ClassLabel(num_classes=5)},
            supervised_keys=("photo", "fine"),
        )

        self.assertEqual(tfds_source.find_image_and_label(info), ("photo", "fine"))

    def test_first_features_without_supervised_keys(self):
        info = self.make_info(
            {"caption": tfds.features.Text(), "photo": tfds.features.Image(),
             "kind": tfds.features.ClassLabel(names=["a", "b"]),
             "other": tfds.features.ClassLabel(num_classes=3)},
        )

        self.assertEqual(tfds_source.find_image_and_label(info), ("photo", "kind"))

    def test_float_images_rejected(self):
        info = self.make_info(
            {"depth": tfds.features.Image(shape=(8, 8, 1), dtype=np.float32),
             "label": tfds.features.ClassLabel(num_classes=2)},
        )

        with self.assertRaisesRegex(ValueError, "'depth' as float32.*uint8"):
            tfds_source.find_image_and_label(info)


class ImportTest(absltest.TestCase):

    def test_import_does_not_need_tfds(self):
        # A None entry in sys.modules makes `import tensorflow_datasets` fail.
        # patch.dict restores every module afterwards.
        with mock.patch.dict(sys.modules, {"tensorflow_datasets": None}):
            del sys.modules["alexnet_tf.data.tfds_source"]
            module = importlib.import_module("alexnet_tf.data.tfds_source")

        self.assertTrue(callable(module.open_tfds))


if __name__ == "__main__":
    absltest.main()
