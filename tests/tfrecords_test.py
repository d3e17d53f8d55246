"""Tests of reading ImageNet TFRecord shards."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

from alexnet_tf.data import records
from alexnet_tf.data import tfrecords
import sample_images

CLASS_NAMES = ("n01440764", "n01443537", "n01484850")


def photo_crop(index):
    """Returns a small real JPEG: a 24x32 crop of china.jpg, shifted by `index`."""
    photo = tf.io.decode_jpeg(sample_images.read_bytes(sample_images.REAL_PHOTOS[0]))
    crop = photo[10 * index : 10 * index + 24, 20 : 52]
    return tf.io.encode_jpeg(crop, quality=90).numpy()


def common_script_example(image_bytes, label, synset, file_name):
    """Serializes an example the way the Inception and TF-slim ImageNet scripts do."""

    def bytes_feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int64_feature(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {
        "image/height": int64_feature(24),
        "image/width": int64_feature(32),
        "image/colorspace": bytes_feature(b"RGB"),
        "image/channels": int64_feature(3),
        "image/class/label": int64_feature(label),
        "image/class/synset": bytes_feature(synset.encode()),
        "image/class/text": bytes_feature(b"some fish"),
        "image/format": bytes_feature(b"JPEG"),
        "image/filename": bytes_feature(file_name.encode()),
        "image/encoded": bytes_feature(image_bytes),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shards(directory, split, num_shards, per_shard, label_start, common_script=False):
    """Writes `num_shards` shards of `per_shard` examples, labels cycling over 3 classes.

    Returns:
        Dict of file name to (0-based label, image bytes) of every example.
    """
    examples = {}
    for shard in range(num_shards):
        path = os.path.join(directory, tfrecords.shard_name(split, shard, num_shards))
        with tf.io.TFRecordWriter(path) as writer:
            for position in range(per_shard):
                number = shard * per_shard + position
                label = number % len(CLASS_NAMES)
                image = photo_crop(number % 4)
                file_name = f"{CLASS_NAMES[label]}_{number}.JPEG"
                if common_script:
                    serialized = common_script_example(
                        image, label + label_start, CLASS_NAMES[label], file_name)
                else:
                    serialized = tfrecords.serialize_example(
                        image, label + label_start, CLASS_NAMES[label], file_name, 24, 32)
                writer.write(serialized)
                examples[file_name] = (label, image)
    return examples


def write_converter_info(directory, num_examples, num_shards, complete=True):
    """Writes the dataset_info.json that build_tfrecords would write for the train split."""
    sizes = [
        os.path.getsize(os.path.join(directory, tfrecords.shard_name("train", index, num_shards)))
        for index in range(num_shards)
    ]
    tfrecords.write_dataset_info(directory, {
        "class_names": list(CLASS_NAMES),
        "label_offset": 0,
        "num_examples": {"train": num_examples},
        "num_shards": {"train": num_shards},
        "shard_bytes": {"train": sizes},
        "complete": complete,
    })


def end_of_records(data, count):
    """Returns the byte offset where the first `count` records of a TFRecord file end."""
    offset = 0
    for _ in range(count):
        length = int.from_bytes(data[offset : offset + 8], "little")
        offset += 16 + length
    return offset


def read_all(dataset):
    """Returns [(name, label, image bytes)] in dataset order."""
    return [
        (record[records.NAME].numpy().decode(), int(record[records.LABEL]),
         record[records.IMAGE].numpy())
        for record in dataset
    ]


class OpenTfrecordsTest(tf.test.TestCase, parameterized.TestCase):

    def setUp(self):
        super().setUp()
        self.data_dir = self.create_tempdir().full_path

    def test_info_file_gives_names_counts_and_labels(self):
        examples = write_shards(self.data_dir, "train", 3, 4, label_start=0)
        write_converter_info(self.data_dir, 12, 3)

        source = tfrecords.open_tfrecords(self.data_dir, "train")

        self.assertEqual(source.class_names, CLASS_NAMES)
        self.assertEqual(source.num_examples, 12)
        self.assertFalse(source.fully_shuffled)
        self.assertIn(self.data_dir, source.description)
        read = read_all(source.read())
        self.assertLen(read, 12)
        self.assertEqual({name: (label, image) for name, label, image in read}, examples)

    def test_read_order_is_repeatable(self):
        write_shards(self.data_dir, "train", 3, 4, label_start=0)
        write_converter_info(self.data_dir, 12, 3)
        dataset = tfrecords.open_tfrecords(self.data_dir, "train").read()

        first = [name for name, _, _ in read_all(dataset)]
        second = [name for name, _, _ in read_all(dataset)]

        self.assertEqual(first, second)

    def test_common_script_labels_start_at_one(self):
        examples = write_shards(self.data_dir, "validation", 2, 3, label_start=1,
                                common_script=True)

        source = tfrecords.open_tfrecords(self.data_dir, "validation",
                                          class_names=CLASS_NAMES)

        self.assertIsNone(source.num_examples)
        read = read_all(source.read())
        self.assertEqual({name: label for name, label, _ in read},
                         {name: label for name, (label, _) in examples.items()})
        self.assertEqual(sorted(label for _, label, _ in read), [0, 0, 1, 1, 2, 2])

    def test_explicit_label_offset(self):
        examples = write_shards(self.data_dir, "train", 2, 3, label_start=1,
                                common_script=True)

        source = tfrecords.open_tfrecords(self.data_dir, "train", label_offset=0,
                                          class_names=CLASS_NAMES + ("extra",))

        read = read_all(source.read())
        self.assertEqual({name: label for name, label, _ in read},
                         {name: label + 1 for name, (label, _) in examples.items()})

    def test_out_of_range_label_names_label_and_offset(self):
        write_shards(self.data_dir, "train", 1, 3, label_start=1, common_script=True)
        source = tfrecords.open_tfrecords(self.data_dir, "train", label_offset=0,
                                          class_names=CLASS_NAMES)

        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    "label out of range.*stored label 3 minus label_offset 0"):
            read_all(source.read())

    def test_read_error_message_of_bad_label(self):
        write_shards(self.data_dir, "train", 1, 3, label_start=1, common_script=True)
        source = tfrecords.open_tfrecords(self.data_dir, "train", label_offset=0,
                                          class_names=CLASS_NAMES)

        with self.assertRaises(tf.errors.InvalidArgumentError) as raised:
            read_all(source.read())

        message = tfrecords.read_error_message(raised.exception)
        self.assertStartsWith(message, "TFRecord label out of range in n01484850_2.JPEG: "
                              "stored label 3 minus label_offset 0 is not in 0 to 2.")
        self.assertIn("--label_offset", message)
        self.assertNotIn("[", message)

    def test_read_error_message_of_other_error(self):
        error = tf.errors.InvalidArgumentError(None, None, "Invalid JPEG data")

        self.assertIsNone(tfrecords.read_error_message(error))

    def test_missing_class_names_say_how_to_fix(self):
        write_shards(self.data_dir, "train", 1, 2, label_start=1, common_script=True)

        with self.assertRaisesRegex(ValueError, "no dataset_info.json.*Pass the class names"):
            tfrecords.open_tfrecords(self.data_dir, "train")

    def test_class_names_differing_from_info_file(self):
        write_shards(self.data_dir, "train", 1, 2, label_start=0)
        write_converter_info(self.data_dir, 2, 1)

        with self.assertRaisesRegex(ValueError, "differ from those in.*dataset_info.json"):
            tfrecords.open_tfrecords(self.data_dir, "train", class_names=("a", "b", "c"))

    def test_info_file_of_other_conversion(self):
        write_shards(self.data_dir, "train", 2, 1, label_start=0)
        tfrecords.write_dataset_info(self.data_dir, {
            "class_names": list(CLASS_NAMES), "label_offset": 0, "num_examples": {"train": 3},
            "num_shards": {"train": 3}, "complete": True,
        })

        with self.assertRaisesRegex(ValueError, "lists 3 train shards, but the folder has 2"):
            tfrecords.open_tfrecords(self.data_dir, "train")

    def test_unfinished_conversion_is_rejected(self):
        write_shards(self.data_dir, "train", 1, 2, label_start=0)
        write_converter_info(self.data_dir, 2, 1, complete=False)

        with self.assertRaisesRegex(ValueError, "did not finish"):
            tfrecords.open_tfrecords(self.data_dir, "train")

    def test_no_shards_names_folder_and_pattern(self):
        write_shards(self.data_dir, "train", 1, 2, label_start=0)

        with self.assertRaisesRegex(FileNotFoundError,
                                    f"No validation shards in '{self.data_dir}'.*"
                                    "validation-NNNNN-of-NNNNN"):
            tfrecords.open_tfrecords(self.data_dir, "validation", class_names=CLASS_NAMES)

    def test_missing_folder_is_named(self):
        missing = os.path.join(self.data_dir, "nowhere")

        with self.assertRaisesRegex(FileNotFoundError, "nowhere"):
            tfrecords.open_tfrecords(missing, "train", class_names=CLASS_NAMES)

    def test_missing_shard_is_named(self):
        write_shards(self.data_dir, "train", 3, 1, label_start=0)
        os.remove(os.path.join(self.data_dir, "train-00001-of-00003"))

        with self.assertRaisesRegex(ValueError, "1 of 3 train shards are missing.*"
                                    "train-00001-of-00003"):
            tfrecords.open_tfrecords(self.data_dir, "train", class_names=CLASS_NAMES)

    def test_shards_of_two_conversions(self):
        write_shards(self.data_dir, "train", 2, 1, label_start=0)
        write_shards(self.data_dir, "train", 3, 1, label_start=0)

        with self.assertRaisesRegex(ValueError, "different conversions.*-of-00002, -of-00003"):
            tfrecords.open_tfrecords(self.data_dir, "train", class_names=CLASS_NAMES)

    @parameterized.named_parameters(
        ("inside_a_record", "record", False),
        ("inside_a_record_header", "header", False),
        ("between_records_with_info_file", "boundary", True),
    )
    def test_truncated_shard_is_named(self, cut, with_info):
        if with_info:
            write_shards(self.data_dir, "train", 2, 3, label_start=0)
            write_converter_info(self.data_dir, 6, 2)
        else:
            write_shards(self.data_dir, "train", 2, 3, label_start=1, common_script=True)
        damaged = os.path.join(self.data_dir, "train-00001-of-00002")
        data = sample_images.read_bytes(damaged)
        two_records = end_of_records(data, 2)
        # TFRecordDataset alone ends the shard silently when the file ends
        # inside a record header, and only the info file's sizes show a cut
        # between records.
        end = {"record": len(data) - 100, "header": two_records + 5,
               "boundary": two_records}[cut]
        with open(damaged, "wb") as file:
            file.write(data[:end])
        source = tfrecords.open_tfrecords(self.data_dir, "train", class_names=CLASS_NAMES)

        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    f"Truncated or corrupt TFRecord shard {damaged}"):
            read_all(source.read())

    def test_corrupt_record_is_named(self):
        write_shards(self.data_dir, "train", 2, 3, label_start=1, common_script=True)
        damaged = os.path.join(self.data_dir, "train-00000-of-00002")
        data = bytearray(sample_images.read_bytes(damaged))
        data[len(data) // 2] ^= 0xFF
        with open(damaged, "wb") as file:
            file.write(data)
        source = tfrecords.open_tfrecords(self.data_dir, "train", class_names=CLASS_NAMES)

        with self.assertRaises(tf.errors.InvalidArgumentError) as raised:
            read_all(source.read())

        self.assertStartsWith(tfrecords.read_error_message(raised.exception),
                              f"Truncated or corrupt TFRecord shard {damaged}: read ")

    def test_shard_removed_after_opening_fails(self):
        write_shards(self.data_dir, "train", 2, 2, label_start=1, common_script=True)
        source = tfrecords.open_tfrecords(self.data_dir, "train", class_names=CLASS_NAMES)
        os.remove(os.path.join(self.data_dir, "train-00001-of-00002"))

        with self.assertRaisesRegex(tf.errors.NotFoundError, "train-00001-of-00002"):
            read_all(source.read())

    def test_record_without_file_name_is_named_by_shard(self):
        path = os.path.join(self.data_dir, "train-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for label in (1, 2):
                writer.write(common_script_example(photo_crop(0), label, "x", ""))

        source = tfrecords.open_tfrecords(self.data_dir, "train", class_names=("a", "b"))

        self.assertEqual([name for name, _, _ in read_all(source.read())],
                         [f"record 0 of {path}", f"record 1 of {path}"])

    @parameterized.named_parameters(
        ("more_files_than_pipelines", 5, False),
        ("more_files_shuffled", 5, True),
        ("one_file", 1, False),
        ("one_file_shuffled", 1, True),
    )
    def test_input_pipelines_split_the_records(self, num_shards, shuffle):
        examples = write_shards(self.data_dir, "train", num_shards, 3, label_start=1,
                                common_script=True)
        source = tfrecords.open_tfrecords(self.data_dir, "train", class_names=CLASS_NAMES)

        names = []
        for pipeline_id in range(2):
            context = tf.distribute.InputContext(
                num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2)
            dataset = source.read(input_context=context, shuffle=shuffle, seed=7)
            pipeline_names = [name for name, _, _ in read_all(dataset)]
            self.assertNotEmpty(pipeline_names)
            names.extend(pipeline_names)

        self.assertCountEqual(names, examples)

    def test_shuffle_changes_order_and_keeps_set(self):
        examples = write_shards(self.data_dir, "train", 8, 2, label_start=0)
        write_converter_info(self.data_dir, 16, 8)
        source = tfrecords.open_tfrecords(self.data_dir, "train")
        dataset = source.read(shuffle=True, seed=3)

        first = [name for name, _, _ in read_all(dataset)]
        second = [name for name, _, _ in read_all(dataset)]

        self.assertCountEqual(first, examples)
        self.assertCountEqual(second, examples)
        self.assertNotEqual(first, second)
        unshuffled = [name for name, _, _ in read_all(source.read())]
        self.assertNotEqual(first, unshuffled)


class SerializeExampleTest(tf.test.TestCase):

    def test_features_of_the_common_format(self):
        image = photo_crop(1)

        example = tf.train.Example.FromString(tfrecords.serialize_example(
            image, 7, "n01443537", "n01443537/a.JPEG", 24, 32))

        feature = example.features.feature
        self.assertEqual(feature["image/encoded"].bytes_list.value, [image])
        self.assertEqual(feature["image/format"].bytes_list.value, [b"JPEG"])
        self.assertEqual(feature["image/class/label"].int64_list.value, [7])
        self.assertEqual(feature["image/class/synset"].bytes_list.value, [b"n01443537"])
        self.assertEqual(feature["image/filename"].bytes_list.value, [b"n01443537/a.JPEG"])
        self.assertEqual(feature["image/height"].int64_list.value, [24])
        self.assertEqual(feature["image/width"].int64_list.value, [32])
        self.assertEqual(feature["image/colorspace"].bytes_list.value, [b"RGB"])
        self.assertEqual(feature["image/channels"].int64_list.value, [3])

    def test_shard_names(self):
        self.assertEqual(tfrecords.shard_name("train", 0, 1024), "train-00000-of-01024")
        self.assertEqual(tfrecords.shard_name("validation", 127, 128),
                         "validation-00127-of-00128")


if __name__ == "__main__":
    absltest.main()
