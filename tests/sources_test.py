"""Tests that the folder, TFRecord and TFDS forms of one data set give the same examples."""

import os
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from alexnet_tf.data import build_tfrecords
from alexnet_tf.data import image_folder
from alexnet_tf.data import input_pipeline
from alexnet_tf.data import records
from alexnet_tf.data import sources
import sample_images

TFDS_NAME = "alexnet_tf_same_photos"
# Real photos of different sizes, so the crops differ between images.
CLASS_PHOTOS = {
    "flower": sample_images.REAL_PHOTOS[1],
    "temple": sample_images.REAL_PHOTOS[0],
    "cat": sample_images.REAL_PHOTOS[2],
}
SPLIT_SIZES = {"train": 3, "validation": 2}
IMAGE_SIZE = 67
RESIZE_SIZE = 76


class AlexnetTfSamePhotos(tfds.core.GeneratorBasedBuilder):
    """The JPEG files of `<manual_dir>/<split>/<class>/`, stored unchanged."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put a folder tree of JPEGs in the manual folder."

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(),
                "label": tfds.features.ClassLabel(names=sorted(CLASS_PHOTOS)),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(dl_manager.manual_dir / split) for split in SPLIT_SIZES
        }

    def _generate_examples(self, split_dir):
        for class_dir in sorted(split_dir.iterdir()):
            for path in sorted(class_dir.iterdir()):
                yield path.name, {"image": path, "label": class_dir.name, "file_name": path.name}


def write_jpeg_tree(root):
    """Writes crops of real photos as RGB JPEGs of a few sizes under `root/<split>/<class>/`."""
    for class_name, photo_path in CLASS_PHOTOS.items():
        photo = Image.open(photo_path).convert("RGB")
        for split, count in SPLIT_SIZES.items():
            folder = os.path.join(root, split, class_name)
            os.makedirs(folder)
            for index in range(count):
                size = (90 + 20 * index, 70 + 15 * index + 5 * (split == "validation"))
                crop = photo.crop((10 * index, 5, 10 * index + 200, 155)).resize(size)
                crop.save(os.path.join(folder, f"{class_name}_{split}_{index}.jpg"), quality=90)


def records_by_file_name(source):
    """Returns {file name: (image bytes, label)} of every record of `source`."""
    result = {}
    for record in source.read():
        name = os.path.basename(record[records.NAME].numpy().decode())
        result[name] = (record[records.IMAGE].numpy(), int(record[records.LABEL]))
    return result


def evaluation_examples(source):
    """Returns the evaluation pipeline's images and labels, sorted by label and content."""
    dataset = input_pipeline.make_dataset(
        source, 4, training=False, image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE
    )
    batches = list(dataset)
    images = np.concatenate([images.numpy() for images, _ in batches])
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    order = np.lexsort((images.reshape(len(images), -1).sum(axis=1), labels))
    return images[order], labels[order]


class SameExamplesTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.work_dir = tempfile.mkdtemp()
        cls.tree = os.path.join(cls.work_dir, "tree")
        write_jpeg_tree(cls.tree)
        cls.shards = os.path.join(cls.work_dir, "shards")
        build_tfrecords.build_tfrecords(
            cls.tree, cls.shards, num_train_shards=2, num_validation_shards=1, num_workers=1
        )
        cls.tfds_dir = os.path.join(cls.work_dir, "tfds")

        cls.sources = {
            "folder": sources.open_train_and_validation(sources.FOLDER, cls.tree),
            "tfrecord": sources.open_train_and_validation(sources.TFRECORD, cls.shards),
            "tfds": sources.open_train_and_validation(
                sources.TFDS_PREFIX + TFDS_NAME, cls.tfds_dir, tfds_manual_dir=cls.tree
            ),
        }

    def test_class_names_and_counts_agree(self):
        for form, (train, validation) in self.sources.items():
            self.assertEqual(tuple(train.class_names), ("cat", "flower", "temple"), form)
            self.assertEqual(tuple(validation.class_names), tuple(train.class_names), form)
            self.assertEqual(train.num_examples, 9, form)
            self.assertEqual(validation.num_examples, 6, form)

    def test_records_are_the_same_bytes_and_labels(self):
        for split in (0, 1):
            expected = records_by_file_name(self.sources["folder"][split])
            self.assertLen(expected, 9 if split == 0 else 6)
            for form in ("tfrecord", "tfds"):
                self.assertEqual(records_by_file_name(self.sources[form][split]), expected, form)

    def test_evaluation_pipelines_give_the_same_examples(self):
        expected_images, expected_labels = evaluation_examples(self.sources["folder"][1])

        for form in ("tfrecord", "tfds"):
            images, labels = evaluation_examples(self.sources[form][1])
            self.assertAllEqual(labels, expected_labels)
            self.assertAllEqual(images, expected_images)

    def test_class_names_file_only_for_tfrecord(self):
        path = self.create_tempfile("classes.txt", content="cat\nflower\ntemple\n").full_path

        with self.assertRaisesRegex(ValueError, "--class_names_file is for --dataset=tfrecord"):
            sources.open_train_and_validation(sources.FOLDER, self.tree, class_names_file=path)

    def test_unknown_dataset_form(self):
        with self.assertRaisesRegex(ValueError, "Unknown dataset 'tfrecords'.*tfds:NAME"):
            sources.open_source("tfrecords", self.shards, image_folder.TRAIN_SPLIT)


class ClassNamesFileTest(absltest.TestCase):

    def test_reads_names_in_order(self):
        path = self.create_tempfile(content="n02\n\nn01\n").full_path
        self.assertEqual(sources.read_class_names_file(path), ("n02", "n01"))

    def test_repeated_name_is_rejected(self):
        path = self.create_tempfile(content="n01\nn02\nn01\n").full_path
        with self.assertRaisesRegex(ValueError, r"repeated: \['n01'\]"):
            sources.read_class_names_file(path)

    def test_missing_file_names_it(self):
        with self.assertRaisesRegex(FileNotFoundError, "nowhere.txt"):
            sources.read_class_names_file("/nowhere.txt")


if __name__ == "__main__":
    absltest.main()
