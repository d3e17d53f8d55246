"""ImageNet TFRecord shards: the example format, the info file and the reader.

The format is that of the widely used ImageNet conversion scripts of the
Inception and TF-slim models (`build_imagenet_data.py`): one `tf.train.Example`
per image with the features named by the `*_KEY` constants, in shards named
`{split}-{index:05d}-of-{num_shards:05d}`, for example `train-00000-of-01024`
and `validation-00000-of-00128`. Those scripts store labels from 1, because
their label 0 was a background class. `build_tfrecords` stores labels from 0
and writes `dataset_info.json` beside the shards, so `open_tfrecords` reads
both kinds.

A truncated or corrupt shard fails with an error naming the shard file.
`tf.data.TFRecordDataset` alone (TensorFlow 2.21) raises `DataLossError`
without the file name, and it ends a shard silently when the file ends inside
a record header.
"""

import json
import math
import os
import re

from absl import logging
import tensorflow as tf

from alexnet_tf.data import records

ENCODED_KEY = "image/encoded"
FORMAT_KEY = "image/format"
LABEL_KEY = "image/class/label"
SYNSET_KEY = "image/class/synset"
FILENAME_KEY = "image/filename"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"
COLORSPACE_KEY = "image/colorspace"
CHANNELS_KEY = "image/channels"

TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"
SPLITS = (TRAIN_SPLIT, VALIDATION_SPLIT)

INFO_FILE = "dataset_info.json"
# First stored label of shards without an info file: the common ImageNet
# scripts store labels 1 to 1000.
COMMON_SCRIPTS_LABEL_OFFSET = 1

# Starts of the error messages of a bad shard and of a bad label, for entry
# points that turn them into one-line errors (see `read_error_message`).
CORRUPT_SHARD = "Truncated or corrupt TFRecord shard"
LABEL_OUT_OF_RANGE = "TFRecord label out of range"

_SHARD_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")
# Each record is stored as an 8-byte length, a 4-byte CRC of the length, the
# data and a 4-byte CRC of the data.
_RECORD_FRAMING_BYTES = 16
# Records checked and parsed in one step. Batches keep the cost of the checks
# small: per-record steps made reading about 1.5x slower in a one-off trial
# (110 KB records, 2 CPU cores, TensorFlow 2.21).
_PARSE_BATCH_SIZE = 32
_MAX_OPEN_SHARDS = 16
# `shard_bytes` is optional: without it, the file sizes are used.
_REQUIRED_INFO_KEYS = ("class_names", "label_offset", "num_examples", "num_shards")

_READ_FEATURES = {
    ENCODED_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def shard_name(split, index, num_shards):
    """Returns the file name of one shard, for example `train-00003-of-01024`."""
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def shard_pattern(split):
    """Returns the shard file name pattern of a split, for messages."""
    return f"{split}-NNNNN-of-NNNNN"


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def serialize_example(image_bytes, label, class_name, file_name, height, width):
    """Serializes one RGB JPEG image as a `tf.train.Example`.

    Args:
        image_bytes: the JPEG file, bytes.
        label: class index from 0, stored as is.
        class_name: name of the class, stored as `image/class/synset`.
        file_name: name of the source file, stored as `image/filename`.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        The serialized example, bytes. Map keys are serialized in sorted order,
        so the same input always gives the same bytes.
    """
    feature = {
        ENCODED_KEY: _bytes_feature(image_bytes),
        FORMAT_KEY: _bytes_feature(b"JPEG"),
        LABEL_KEY: _int64_feature(label),
        SYNSET_KEY: _bytes_feature(class_name.encode("utf-8")),
        FILENAME_KEY: _bytes_feature(file_name.encode("utf-8")),
        HEIGHT_KEY: _int64_feature(height),
        WIDTH_KEY: _int64_feature(width),
        COLORSPACE_KEY: _bytes_feature(b"RGB"),
        CHANNELS_KEY: _int64_feature(3),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def write_dataset_info(directory, info):
    """Writes `info` as `directory/dataset_info.json`, replacing it atomically.

    The file is written under a temporary name and then renamed, so a reader
    never sees half a file.
    """
    path = os.path.join(directory, INFO_FILE)
    temporary_path = path + ".partial"
    with tf.io.gfile.GFile(temporary_path, "w") as file:
        file.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(temporary_path, path, overwrite=True)


def read_dataset_info(directory):
    """Reads `directory/dataset_info.json`.

    Returns:
        The info dict, or None if the file does not exist.

    Raises:
        ValueError: if the file is not valid JSON or describes a conversion
            that did not finish.
    """
    path = os.path.join(directory, INFO_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        text = file.read()
    try:
        info = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path!r} is not valid JSON: {error}. Restore it or "
                         "convert the images again.") from None
    if not info.get("complete", False):
        raise ValueError(
            f"{path!r} describes a conversion that did not finish, so the shards in "
            f"{directory!r} are incomplete. Convert the images again into a new folder."
        )
    missing = [key for key in _REQUIRED_INFO_KEYS if key not in info]
    if missing:
        raise ValueError(f"{path!r} lacks the keys {missing}. Restore it or convert the "
                         "images again.")
    return info


def list_shards(data_dir, split):
    """Lists the shard files of a split and checks that the set is complete.

    Args:
        data_dir: the folder of the shards.
        split: `TRAIN_SPLIT` or `VALIDATION_SPLIT`.

    Returns:
        The shard paths, sorted by shard index.

    Raises:
        FileNotFoundError: if `data_dir` is missing or has no shards of the split.
        ValueError: if the shards disagree on their number, or some are missing.
    """
    if not tf.io.gfile.isdir(data_dir):
        raise FileNotFoundError(
            f"TFRecord folder not found: {data_dir!r}. Pass the folder that contains "
            f"the {shard_pattern(TRAIN_SPLIT)} and {shard_pattern(VALIDATION_SPLIT)} files."
        )

    indices_by_count = {}
    for path in tf.io.gfile.glob(os.path.join(data_dir, f"{split}-*-of-*")):
        match = _SHARD_NAME.match(os.path.basename(path))
        if match and match["split"] == split:
            indices_by_count.setdefault(int(match["count"]), set()).add(int(match["index"]))

    if not indices_by_count:
        raise FileNotFoundError(
            f"No {split} shards in {data_dir!r}: expected files named "
            f"{shard_pattern(split)}, for example {shard_name(split, 0, 1024)}."
        )
    if len(indices_by_count) > 1:
        counts = ", ".join(f"-of-{count:05d}" for count in sorted(indices_by_count))
        raise ValueError(
            f"The {split} shards in {data_dir!r} belong to different conversions "
            f"({counts}). Keep the shards of one conversion only."
        )

    (num_shards, indices), = indices_by_count.items()
    missing = sorted(set(range(num_shards)) - indices)
    if missing:
        names = [shard_name(split, index, num_shards) for index in missing[:5]]
        raise ValueError(
            f"{len(missing)} of {num_shards} {split} shards are missing from "
            f"{data_dir!r}, for example {', '.join(names)}. Copy them again or convert "
            "the images again."
        )
    return [os.path.join(data_dir, shard_name(split, index, num_shards))
            for index in range(num_shards)]


def _resolve_class_names(info, class_names, data_dir):
    """Returns the class names from the info file or the caller, as a tuple."""
    if info is not None:
        info_names = tuple(info["class_names"])
        if class_names is not None and tuple(class_names) != info_names:
            raise ValueError(
                f"The class names given differ from those in "
                f"{os.path.join(data_dir, INFO_FILE)!r} ({len(info_names)} classes, "
                f"starting {list(info_names[:3])}). Pass none to use the file's."
            )
        return info_names

    if class_names is None:
        raise ValueError(
            f"{data_dir!r} has no {INFO_FILE}, so the class names are unknown. Pass "
            "the class names in label order, for example the 1000 sorted ImageNet "
            "synset ids (n01440764, n01443537, ...) for shards of the common "
            "ImageNet conversion scripts."
        )
    class_names = tuple(class_names)
    if not class_names or len(set(class_names)) != len(class_names):
        raise ValueError(f"Expected distinct class names. Received: {list(class_names[:10])}")
    return class_names


def _resolve_label_offset(info, label_offset, data_dir):
    """Returns the label offset: the caller's, the info file's, or 1."""
    if info is None:
        default = COMMON_SCRIPTS_LABEL_OFFSET
    else:
        default = int(info["label_offset"])
    if label_offset is None:
        return default
    if label_offset < 0:
        raise ValueError(f"label_offset must be 0 or more. Received: {label_offset}")
    if info is not None and label_offset != default:
        logging.warning(
            "Using label_offset=%d for %s, whose %s gives %d.",
            label_offset, data_dir, INFO_FILE, default,
        )
    return label_offset


def _shard_sizes(paths, info, split):
    """Returns the expected size of each shard, in bytes.

    The info file's sizes also catch a shard cut exactly between two records.
    Without them, the file sizes are used.
    """
    sizes = (info or {}).get("shard_bytes", {}).get(split)
    if sizes is not None:
        if len(sizes) != len(paths):
            raise ValueError(
                f"{INFO_FILE} lists {len(sizes)} {split} shards, but the folder has "
                f"{len(paths)}. Keep the shards and the info file of one conversion."
            )
        return [int(size) for size in sizes]
    return [tf.io.gfile.stat(path).length for path in paths]


def open_tfrecords(data_dir, split, label_offset=None, class_names=None):
    """Opens one split of TFRecord shards as a `records.Source`.

    Args:
        data_dir: the folder of the shards.
        split: `TRAIN_SPLIT` or `VALIDATION_SPLIT`.
        label_offset: the stored label of class 0; each label read is the
            stored label minus this. None takes the value of `dataset_info.json`
            (0 for shards of `build_tfrecords`), or 1 for shards without that
            file, which is the convention of the common ImageNet scripts.
        class_names: class names in label order, for shards without
            `dataset_info.json`. With that file they must match its names.

    Returns:
        A `records.Source`. Its `num_examples` comes from `dataset_info.json`,
        or is None without it. Reading fails with an error naming the shard if
        a shard is truncated or corrupt, and with an error naming the label and
        `label_offset` if a label is out of range.

    Raises:
        FileNotFoundError: if there are no shards of the split.
        ValueError: if shards are missing, the class names are unknown or
            disagree with `dataset_info.json`, or `label_offset` is negative.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")

    paths = list_shards(data_dir, split)
    info = read_dataset_info(data_dir)
    if info is not None and info["num_shards"].get(split) != len(paths):
        raise ValueError(
            f"{os.path.join(data_dir, INFO_FILE)!r} lists "
            f"{info['num_shards'].get(split, 'no')} {split} shards, but the folder has "
            f"{len(paths)}. Keep the shards and the info file of one conversion."
        )
    class_names = _resolve_class_names(info, class_names, data_dir)
    label_offset = _resolve_label_offset(info, label_offset, data_dir)
    sizes = _shard_sizes(paths, info, split)
    num_examples = int(info["num_examples"][split]) if info is not None else None

    description = (f"TFRecord shards {os.path.join(data_dir, split)}-*-of-{len(paths):05d} "
                   f"({len(paths)} files)")
    logging.info("%s: %s examples, %d classes, label_offset %d.", description,
                 num_examples if num_examples is not None else "unknown",
                 len(class_names), label_offset)

    def read(input_context=None, shuffle=False, seed=None):
        return _read_shards(paths, sizes, len(class_names), label_offset,
                            input_context, shuffle, seed)

    return records.Source(
        description=description,
        class_names=class_names,
        num_examples=num_examples,
        read=read,
        fully_shuffled=False,
    )


def _fail_unless(condition, make_message_parts):
    """Returns a tensor to depend on that fails with a message if `condition` is False.

    The message is built only on failure, so checking every batch stays cheap.

    Args:
        condition: scalar bool tensor.
        make_message_parts: function returning strings and scalar tensors,
            joined into the message.
    """

    def fail():
        parts = [part if isinstance(part, str) or part.dtype == tf.string
                 else tf.strings.as_string(part) for part in make_message_parts()]
        assertion = tf.debugging.Assert(condition, [tf.strings.join(parts)])
        with tf.control_dependencies([assertion]):
            return tf.constant(False)

    return tf.cond(condition, lambda: tf.constant(True), fail)


def _parse_batch(serialized, shard_path, first_index, num_classes, label_offset):
    """Parses a batch of serialized examples of one shard into a batch of records.

    Examples without a file name are named by their index in the shard.

    Raises (when run):
        tf.errors.InvalidArgumentError: if a label minus `label_offset` is not
            a class index.
    """
    features = tf.io.parse_example(serialized, _READ_FEATURES)
    stored_labels = features[LABEL_KEY]
    labels = stored_labels - label_offset

    indices = tf.range(first_index, first_index + tf.size(serialized, out_type=tf.int64))
    fallback_names = tf.strings.join(["record ", tf.strings.as_string(indices), " of ",
                                      shard_path])
    names = tf.where(tf.equal(features[FILENAME_KEY], ""), fallback_names,
                     features[FILENAME_KEY])

    in_range = tf.logical_and(labels >= 0, labels < num_classes)

    def describe_bad_label():
        first_bad = tf.argmin(tf.cast(in_range, tf.int32))
        return [LABEL_OUT_OF_RANGE, " in ", names[first_bad], ": stored label ",
                stored_labels[first_bad],
                f" minus label_offset {label_offset} is not in 0 to {num_classes - 1}. "
                "Shards of the common ImageNet scripts store labels from 1 (label_offset "
                "1), shards of alexnet_tf from 0 (label_offset 0). Set --label_offset to "
                "the stored label of the first class."]

    check = _fail_unless(tf.reduce_all(in_range), describe_bad_label)
    with tf.control_dependencies([check]):
        return records.make_record(tf.identity(features[ENCODED_KEY]), labels, names)


def _make_shard_reader(num_classes, label_offset):
    """Returns `read_shard(path, expected_size)`, giving the records of one shard.

    `TFRecordDataset` reports a truncated or corrupt record without naming the
    file, and it ends silently where a file ends inside a record header. Here
    its errors end the shard instead, and a final step compares the bytes of
    the records read with the expected size, failing with the shard's path. A
    probe opens the file first, because `ignore_errors` would retry a file
    that cannot be opened forever.
    """

    def read_shard(path, expected_size):
        probe = tf.data.FixedLengthRecordDataset(path, 1, buffer_size=1).take(1)
        probe = probe.filter(lambda _: False)
        batches = probe.concatenate(tf.data.TFRecordDataset(path).ignore_errors())
        batches = batches.batch(_PARSE_BATCH_SIZE)
        # `batch` never yields an empty batch, so an empty one marks the end.
        batches = batches.concatenate(
            tf.data.Dataset.from_tensors(tf.constant([], tf.string)))

        def check_and_parse(state, batch):
            end_offset, num_records = state
            batch_size = tf.size(batch, out_type=tf.int64)
            is_end = tf.equal(batch_size, 0)
            check = _fail_unless(
                tf.logical_or(tf.logical_not(is_end), tf.equal(end_offset, expected_size)),
                lambda: [CORRUPT_SHARD, " ", path, ": read ", num_records,
                         " records that end at byte ", end_offset, ", but the file "
                         "should have ", expected_size, " bytes. Copy or convert this "
                         "shard again."],
            )
            record_bytes = tf.cast(tf.strings.length(batch), tf.int64) + _RECORD_FRAMING_BYTES
            new_state = (end_offset + tf.reduce_sum(record_bytes), num_records + batch_size)
            with tf.control_dependencies([check]):
                parsed = _parse_batch(batch, path, num_records, num_classes, label_offset)
            return new_state, parsed

        initial_state = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
        return batches.scan(initial_state, check_and_parse).unbatch()

    return read_shard


def _read_shards(paths, sizes, num_classes, label_offset, input_context, shuffle, seed):
    """Builds the dataset of `Source.read`; see `open_tfrecords`.

    With an input context, each pipeline reads every n-th shard file, or,
    with fewer files than pipelines, every n-th record of all files. Sharding
    records needs every pipeline to see the records in the same order, so
    reads are then deterministic, and files are shuffled only with a seed.
    """
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    shard_files = num_pipelines > 1 and len(paths) >= num_pipelines
    shard_records = num_pipelines > 1 and not shard_files

    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(sizes, tf.int64)))
    num_files = len(paths)
    if shard_files:
        files = files.shard(num_pipelines, pipeline_id)
        num_files = math.ceil(len(paths) / num_pipelines)
    if shard_records:
        # NOTE: each pipeline then reads and parses every record and keeps its
        # share, which costs little only because this case has few files.
        logging.info("%d shard files for %d input pipelines: each pipeline reads every "
                     "%d-th record of all files.", len(paths), num_pipelines, num_pipelines)

    if shuffle and shard_records and seed is None:
        logging.warning("Not shuffling the shard files: with fewer files than input "
                        "pipelines, the pipelines need a seed to agree on the order.")
    elif shuffle:
        files = files.shuffle(num_files, seed=seed, reshuffle_each_iteration=True)

    examples = files.interleave(
        _make_shard_reader(num_classes, label_offset),
        cycle_length=min(num_files, _MAX_OPEN_SHARDS),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle or shard_records,
    )
    if shard_records:
        examples = examples.shard(num_pipelines, pipeline_id)
    return examples


def read_error_message(error):
    """Returns the one-line message of a damaged shard or bad label, or None.

    Reading fails with a `tf.errors.InvalidArgumentError` whose message contains
    an assertion such as "assertion failed: [Truncated or corrupt TFRecord
    shard PATH: ...]". Entry points print this line instead of a traceback.

    Args:
        error: a `tf.errors.OpError`.

    Returns:
        The message without the assertion's brackets, or None if `error` is
        another error.
    """
    for marker in (CORRUPT_SHARD, LABEL_OUT_OF_RANGE):
        start = error.message.find(marker)
        if start >= 0:
            line = error.message[start:].splitlines()[0]
            return line.rstrip().removesuffix("]")
    return None
