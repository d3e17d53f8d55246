"""Tests of the input pipeline: bad files, sharding, options and batch shapes."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from alexnet_tf import distribution
from alexnet_tf.data import bad_images
from alexnet_tf.data import image_folder
from alexnet_tf.data import input_pipeline
from alexnet_tf.data import records
import sample_images

IMAGE_SIZE = 67
RESIZE_SIZE = 76


def write_photo_tree(root, bad_files=None):
    """Writes each real photo as its own class under `root/train`; returns the paths.

    `bad_files` maps a file name to its content; each goes into the first class.
    """
    paths = []
    for index, photo in enumerate(sample_images.REAL_PHOTOS):
        folder = os.path.join(root, "train", f"class_{index}")
        os.makedirs(folder)
        path = os.path.join(folder, "photo" + os.path.splitext(photo)[1])
        with open(path, "wb") as file:
            file.write(sample_images.read_bytes(photo))
        paths.append(path)

    for name, content in (bad_files or {}).items():
        with open(os.path.join(root, "train", "class_0", name), "wb") as file:
            file.write(content)
    return paths


def truncated_jpeg():
    data = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])
    return data[: len(data) // 2]


BAD_FILES = {
    "empty.jpg": b"",
    "page.jpg": b"<html><body>Not found</body></html>",
    "cut.jpg": truncated_jpeg(),
}


def two_pipelines():
    return [
        tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2
        )
        for index in range(2)
    ]


class BadFilesTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.create_tempdir().full_path
        self.good_paths = write_photo_tree(self.root, BAD_FILES)
        self.source = image_folder.open_folder(self.root, image_folder.TRAIN_SPLIT)

    def test_evaluation_skips_and_counts_bad_files(self):
        log = bad_images.BadImageLog("test")

        with self.assertLogs(logger="absl", level="WARNING") as logs:
            dataset = input_pipeline.make_dataset(
                self.source, 16, training=False, image_size=IMAGE_SIZE,
                resize_size=RESIZE_SIZE, bad_images=log,
            )
            batches = list(dataset)

        labels = np.concatenate([labels.numpy() for _, labels in batches])
        self.assertCountEqual(labels, range(len(self.good_paths)))
        self.assertEqual(log.count, len(BAD_FILES))
        self.assertEqual(
            log.reasons(),
            {"empty file": 1, "not a JPEG, PNG, GIF or BMP image": 1,
             "truncated JPEG: no end-of-image marker": 1},
        )
        text = "\n".join(logs.output)
        for name in BAD_FILES:
            self.assertIn(name, text)

    def test_training_fills_every_batch_despite_skips(self):
        # Five good images, three bad: ten full batches of four need the good
        # images many times over.
        log = bad_images.BadImageLog("test")
        dataset = input_pipeline.make_dataset(
            self.source, 4, training=True, image_size=IMAGE_SIZE,
            resize_size=RESIZE_SIZE, seed=3, bad_images=log,
        )

        with self.assertLogs(logger="absl", level="WARNING"):
            batches = list(dataset.take(10))

        self.assertLen(batches, 10)
        for images, labels in batches:
            self.assertEqual(images.shape, (4, IMAGE_SIZE, IMAGE_SIZE, 3))
            self.assertTrue(np.isfinite(images.numpy()).all())
            self.assertAllInRange(labels, 0, len(self.good_paths) - 1)
        # Each bad file counts once, however often the repeated data skips it.
        self.assertEqual(log.count, len(BAD_FILES))

    def test_strict_decoding_names_the_file(self):
        options = input_pipeline.InputOptions(strict_decoding=True)
        dataset = input_pipeline.make_dataset(
            self.source, 16, training=False, image_size=IMAGE_SIZE,
            resize_size=RESIZE_SIZE, options=options,
        )

        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, bad_images.BAD_IMAGE) as error:
            list(dataset)

        message = str(error.exception)
        self.assertTrue(any(name in message for name in BAD_FILES), message)
        self.assertIn("--strict_decoding", message)

    def test_training_on_only_bad_files_ends(self):
        root = self.create_tempdir().full_path
        folder = os.path.join(root, "train", "only")
        os.makedirs(folder)
        for name, content in BAD_FILES.items():
            with open(os.path.join(folder, name), "wb") as file:
                file.write(content)
        source = image_folder.open_folder(root, image_folder.TRAIN_SPLIT)

        dataset = input_pipeline.make_dataset(
            source, 2, training=True, image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE,
            bad_images=bad_images.BadImageLog("test"),
        )

        with self.assertLogs(logger="absl", level="WARNING"):
            self.assertEmpty(list(dataset.take(3)))


def undecodable_jpeg():
    """A JPEG whose first and last bytes look whole, so only the decoder can tell."""
    return b"\xff\xd8\xff" + bytes(64) + b"\xff\xd9"


class UndecodableFileTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.create_tempdir().full_path
        self.good_paths = write_photo_tree(self.root, {"broken.jpg": undecodable_jpeg()})
        self.source = image_folder.open_folder(self.root, image_folder.TRAIN_SPLIT)

    def test_passes_the_cheap_check(self):
        valid, _ = bad_images.check_image(tf.constant(undecodable_jpeg()))
        self.assertTrue(valid)

    def test_evaluation_drops_only_that_image(self):
        dataset = input_pipeline.make_dataset(
            self.source, 16, training=False, image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE
        )

        labels = np.concatenate([labels.numpy() for _, labels in dataset])

        self.assertCountEqual(labels, range(len(self.good_paths)))

    def test_training_goes_on_with_full_batches(self):
        dataset = input_pipeline.make_dataset(
            self.source, 2, training=True, image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE,
            seed=5,
        )

        batches = list(dataset.take(12))

        self.assertLen(batches, 12)
        for images, _ in batches:
            self.assertEqual(images.shape, (2, IMAGE_SIZE, IMAGE_SIZE, 3))

    def test_strict_decoding_stops(self):
        options = input_pipeline.InputOptions(strict_decoding=True)
        dataset = input_pipeline.make_dataset(
            self.source, 2, training=True, image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE,
            seed=5, options=options,
        )

        with self.assertRaises(tf.errors.InvalidArgumentError):
            list(dataset.take(12))


class ShardingTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.create_tempdir().full_path
        self.paths = write_photo_tree(self.root)
        self.source = image_folder.open_folder(self.root, image_folder.TRAIN_SPLIT)

    def test_two_pipelines_read_each_record_once(self):
        names = []
        for context in two_pipelines():
            dataset = self.source.read(input_context=context, shuffle=True, seed=1)
            names.extend(record[records.NAME].numpy().decode() for record in dataset)

        self.assertCountEqual(names, self.paths)

    def test_two_pipelines_evaluate_each_image_once(self):
        labels = []
        for context in two_pipelines():
            dataset = input_pipeline.make_dataset(
                self.source, 2, training=False, image_size=IMAGE_SIZE,
                resize_size=RESIZE_SIZE, input_context=context,
            )
            labels.extend(int(label) for _, batch in dataset for label in batch)

        # Each photo is its own class, so labels identify images.
        self.assertCountEqual(labels, range(len(self.paths)))

    def test_two_replicas_evaluate_each_image_once(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
        dataset = input_pipeline.distribute_dataset(
            strategy, self.source, 4, training=False,
            image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE,
        )

        labels = []
        for _, batch in dataset:
            for replica_labels in strategy.experimental_local_results(batch):
                labels.extend(int(label) for label in replica_labels)

        self.assertCountEqual(labels, range(len(self.paths)))

    def test_shuffle_changes_order_each_epoch(self):
        dataset = self.source.read(shuffle=True, seed=5)

        orders = {
            tuple(record[records.NAME].numpy() for record in dataset) for _ in range(6)
        }

        self.assertGreater(len(orders), 1)
        self.assertEqual({frozenset(order) for order in orders}, {frozenset(
            path.encode() for path in self.paths)})


class OptionsTest(tf.test.TestCase):

    def test_options_reach_tf_data(self):
        root = self.create_tempdir().full_path
        write_photo_tree(root)
        source = image_folder.open_folder(root, image_folder.TRAIN_SPLIT)
        options = input_pipeline.InputOptions(
            deterministic=True, private_threads=3, autotune_ram_budget_mb=64, cache=True
        )

        def make_dataset():
            return input_pipeline.make_dataset(
                source, 2, training=True, image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE,
                seed=1, options=options,
            )

        dataset = make_dataset()

        tf_options = dataset.options()
        self.assertTrue(tf_options.deterministic)
        self.assertEqual(tf_options.threading.private_threadpool_size, 3)
        self.assertEqual(tf_options.autotune.ram_budget, 64 << 20)
        self.assertEqual(
            tf_options.experimental_distribute.auto_shard_policy,
            tf.data.experimental.AutoShardPolicy.OFF,
        )
        first = [labels.numpy().tolist() for _, labels in dataset.take(6)]
        again = [labels.numpy().tolist() for _, labels in make_dataset().take(6)]
        self.assertEqual(first, again)

    def test_cached_training_sees_every_image_each_epoch(self):
        root = self.create_tempdir().full_path
        paths = write_photo_tree(root)
        source = image_folder.open_folder(root, image_folder.TRAIN_SPLIT)
        options = input_pipeline.InputOptions(cache=True)

        dataset = input_pipeline.make_dataset(
            source, len(paths), training=True, image_size=IMAGE_SIZE,
            resize_size=RESIZE_SIZE, seed=2, options=options,
        )

        for _, labels in dataset.take(3):
            self.assertCountEqual(labels.numpy(), range(len(paths)))


if __name__ == "__main__":
    absltest.main()
