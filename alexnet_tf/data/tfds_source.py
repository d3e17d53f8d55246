"""Reads an image classification data set of TensorFlow Datasets (TFDS) as records.

Any TFDS data set with an `Image` and a `ClassLabel` feature works, for example
`imagenet2012`, `imagenette` or `cifar10`. Images are read undecoded, as the
bytes TFDS stored, so they go through the same decoding and augmentation as
images from a folder tree. TFDS 4.9.10 stores an image that a builder passes
as a file path, file object or bytes unchanged, so a data set built from image
files yields the same bytes as the files. imagenet2012 is such a data set,
except for 22 CMYK JPEGs and 1 PNG that its builder converts to RGB JPEG.

`tensorflow_datasets` takes seconds to import, so only the functions of this
module import it, and the rest of the package works without loading it.
"""

import difflib
import os

from absl import logging
import numpy as np
import tensorflow as tf

from alexnet_tf.data import records

TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"
# TFDS splits that serve as the validation split, in order of preference.
_VALIDATION_CANDIDATES = ("validation", "test")

# The feature that names each image, where a data set has one (imagenet2012
# stores the original file name there). Others are named by their TFDS id,
# "<record file>__<index in file>".
_FILE_NAME_FEATURE = "file_name"
_TFDS_ID_FEATURE = "tfds_id"

# Files a data set needs in its manual directory before it can be prepared.
# The imagenet2012 builder prepares whichever of its archives it finds, so
# without this check a missing validation archive would only surface after
# hours of preparing the training split.
_REQUIRED_MANUAL_FILES = {
    "imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"),
}
_IMAGENET_DOWNLOAD_PAGE = "https://image-net.org/download-images"

_MAX_CLOSE_MATCHES = 5
_LIST_NAMES_HINT = (
    "List the names with `python -c \"import tensorflow_datasets as tfds; "
    "print(tfds.list_builders())\"` or see "
    "https://www.tensorflow.org/datasets/catalog/overview."
)


def _import_tfds():
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    return tfds


def open_tfds(name, split, data_dir=None, manual_dir=None, download=True):
    """Opens one split of a TFDS image classification data set.

    Args:
        name: the TFDS name, optionally with a config and a version, for
            example "imagenet2012", "imagenette/320px-v2" or
            "imagenet2012:5.1.0".
        split: "train", "validation" or a TFDS split string such as
            "train[:90%]". `resolve_split` describes how each maps to TFDS.
        data_dir: the TFDS data directory, which contains `<name>/<version>/`.
            None uses TFDS's default: $TFDS_DATA_DIR, else
            ~/tensorflow_datasets.
        manual_dir: the folder with the files of a data set that must be
            downloaded by hand, such as ImageNet's archives. None uses
            `data_dir/downloads/manual`, as TFDS does.
        download: whether to download and prepare the data set when it is not
            prepared in `data_dir` yet. Preparing ImageNet takes hours.

    Returns:
        A `records.Source` whose records are read with undecoded images.

    Raises:
        ValueError: if the name is unknown, the data set has no image and class
            label features, or the split does not exist.
        FileNotFoundError: if the data set is not prepared and `download` is
            False, or files it needs in the manual directory are missing.
    """
    tfds = _import_tfds()
    builder = _load_builder(tfds, name, data_dir)
    # Checked before preparing, so that a data set of the wrong kind is
    # rejected without downloading it.
    image_key, label_key = find_image_and_label(builder.info)

    if not builder.is_prepared():
        _prepare(tfds, builder, manual_dir, download)

    tfds_split = resolve_split(builder.info, split)
    features = builder.info.features
    class_names = tuple(features[label_key].names)
    num_examples = builder.info.splits[tfds_split].num_examples
    name_key = _FILE_NAME_FEATURE if _has_string_feature(features, _FILE_NAME_FEATURE) else None
    description = f"TFDS {builder.info.full_name} split {tfds_split} in {builder.data_dir}"
    logging.info(
        "Opened %s: %d examples in %d classes, images from feature %r, labels from %r.",
        description, num_examples, len(class_names), image_key, label_key,
    )

    return records.Source(
        description=description,
        class_names=class_names,
        num_examples=num_examples,
        read=_make_reader(tfds, builder, tfds_split, image_key, label_key, name_key),
        fully_shuffled=False,
    )


def _load_builder(tfds, name, data_dir):
    """Returns the TFDS builder of `name`, raising errors that name close matches."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as error:
        raise ValueError(_unknown_name_message(tfds, name)) from error
    except AssertionError as error:
        # TFDS raises AssertionError for a version the builder does not have.
        raise ValueError(f"Invalid TFDS data set {name!r}: {error}") from error


def _unknown_name_message(tfds, name):
    base_name = name.split(":")[0].split("/")[0]
    known_names = tfds.list_builders(with_community_datasets=False)
    # list_builders can name a data set twice, so duplicates are dropped.
    known_names = list(dict.fromkeys(known_names))
    matches = difflib.get_close_matches(base_name, known_names, n=_MAX_CLOSE_MATCHES)
    if matches:
        suggestion = f"Close matches: {', '.join(matches)}."
    else:
        suggestion = "No registered data set has a similar name."
    return f"TFDS data set {name!r} not found. {suggestion} {_LIST_NAMES_HINT}"


def find_image_and_label(builder_info):
    """Finds the image and the class label features of a data set.

    The data set's `supervised_keys` name them when they are an `Image` and a
    `ClassLabel` feature. Otherwise the first top-level features of those
    types are used.

    Args:
        builder_info: a `tfds.core.DatasetInfo`.

    Returns:
        `(image_key, label_key)`, feature names.

    Raises:
        ValueError: if the data set has no uint8 image or no class label
            feature, so it is not an image classification data set.
    """
    tfds = _import_tfds()
    features = builder_info.features

    def is_image(key):
        return key in features and isinstance(features[key], tfds.features.Image)

    def is_label(key):
        return key in features and isinstance(features[key], tfds.features.ClassLabel)

    keys = builder_info.supervised_keys
    if (
        isinstance(keys, tuple) and len(keys) == 2
        and all(isinstance(key, str) for key in keys)
        and is_image(keys[0]) and is_label(keys[1])
    ):
        image_key, label_key = keys
    else:
        image_key = next((key for key in features.keys() if is_image(key)), None)
        label_key = next((key for key in features.keys() if is_label(key)), None)

    if image_key is None or label_key is None:
        feature_types = {key: type(feature).__name__ for key, feature in features.items()}
        raise ValueError(
            f"TFDS data set {builder_info.full_name} is not an image classification "
            f"data set: it needs an Image and a ClassLabel feature, and its features "
            f"are {feature_types}."
        )
    # Float images are stored as PNGs of their raw bits, which image decoding
    # cannot turn back into pixels.
    if features[image_key].np_dtype != np.uint8:
        raise ValueError(
            f"TFDS data set {builder_info.full_name} stores images of feature "
            f"{image_key!r} as {features[image_key].np_dtype.__name__}; only uint8 "
            "images can be read as encoded image files."
        )
    return image_key, label_key


def _has_string_feature(features, key):
    if key not in features:
        return False
    return features[key].shape == () and features[key].tf_dtype == tf.string


def _prepare(tfds, builder, manual_dir, download):
    """Downloads and prepares the data set of `builder` into its data directory.

    Raises:
        FileNotFoundError: if `download` is False, or files the data set needs
            in its manual directory are missing.
    """
    full_name = builder.info.full_name
    if not download:
        raise FileNotFoundError(
            f"TFDS data set {full_name} is not prepared in {builder.data_dir_root} "
            f"(no {builder.data_dir}). Allow downloading (download=True) to prepare "
            "it there, or set the data directory to the one where it was prepared."
        )

    manual_dir = os.fspath(manual_dir or _default_manual_dir(builder))
    _check_manual_files(builder, manual_dir)

    logging.info(
        "Preparing TFDS data set %s in %s, manual directory %s.",
        full_name, builder.data_dir, manual_dir,
    )
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except AssertionError as error:
        # TFDS raises AssertionError when the manual directory is missing,
        # empty or lacks the files a builder reads from it.
        if not builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
            raise
        message = (
            f"Preparing TFDS data set {full_name} failed because files it needs are "
            f"missing from the manual directory {manual_dir}. TFDS reported: {error}"
        )
        instructions = builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()
        if instructions not in str(error):
            message += f"\nThe data set's instructions:\n{instructions}"
        raise FileNotFoundError(message) from error
    logging.info("Prepared TFDS data set %s in %s.", full_name, builder.data_dir)


def _default_manual_dir(builder):
    # TFDS's default when neither a download nor a manual directory is given.
    return os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")


def _check_manual_files(builder, manual_dir):
    required = _REQUIRED_MANUAL_FILES.get(builder.name, ())
    missing = [
        file_name for file_name in required
        if not tf.io.gfile.exists(os.path.join(manual_dir, file_name))
    ]
    if missing:
        raise FileNotFoundError(
            f"Cannot prepare TFDS data set {builder.info.full_name}: "
            f"{', '.join(missing)} not found in the manual directory {manual_dir}. "
            f"Download {' and '.join(required)} from {_IMAGENET_DOWNLOAD_PAGE} "
            f"(registration required) into {manual_dir}, or pass the folder that "
            "contains them as the manual directory."
        )


def resolve_split(builder_info, split):
    """Maps the project's split name, or a TFDS split string, to a TFDS split.

    "validation" is TFDS's "validation" split, or "test" for data sets without
    one, such as cifar10. Any other string, "train" included, is a TFDS split
    string used unchanged: a split name such as "test", or a slice such as
    "train[:90%]" or "train[90%:]" to hold out part of the training split
    (syntax: https://www.tensorflow.org/datasets/splits).

    Args:
        builder_info: a `tfds.core.DatasetInfo` of a prepared data set.
        split: the split name or string.

    Returns:
        The TFDS split string.

    Raises:
        ValueError: if the split does not exist or the string is invalid.
    """
    available = sorted(builder_info.splits.keys())
    full_name = builder_info.full_name
    if split == VALIDATION_SPLIT:
        for candidate in _VALIDATION_CANDIDATES:
            if candidate in available:
                return candidate
        raise ValueError(
            f"TFDS data set {full_name} has no 'validation' or 'test' split, only "
            f"{available}. Hold out part of the training split instead, for example "
            "with the splits 'train[:90%]' and 'train[90%:]'."
        )

    try:
        # TFDS parses a split string only when its examples are counted.
        num_examples = builder_info.splits[split].num_examples
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"Split {split!r} is not a split of TFDS data set {full_name} or a valid "
            f"slice of one. Its splits are {available}. Pass one of them or a slice "
            f"such as 'train[:90%]'. TFDS reported: {error}"
        ) from error
    # TFDS 4.9.10 counts a reversed slice within one record file, such as
    # "train[5:2]", as -3 examples rather than 0.
    if num_examples <= 0:
        raise ValueError(f"Split {split!r} of TFDS data set {full_name} has no examples.")
    return split


def _make_reader(tfds, builder, tfds_split, image_key, label_key, name_key):
    """Returns the `read` function of a `records.Source` for one TFDS split."""
    decoders = {image_key: tfds.decode.SkipDecoding()}

    def to_record(example):
        name = example[name_key] if name_key else example[_TFDS_ID_FEATURE]
        return records.make_record(example[image_key], example[label_key], name)

    def read(input_context=None, shuffle=False, seed=None):
        """Reads the split once, or this input pipeline's part of it.

        Each of several input pipelines reads its own slice of the split from
        `tfds.even_splits`: contiguous ranges of examples whose sizes differ by
        at most one. TFDS's own sharding by `ReadConfig.input_context` hands
        out whole record files and fails when a split has fewer files than
        there are pipelines. `Dataset.shard` on the records would make every
        pipeline read the whole split, in the same order, which shuffled reads
        do not keep.
        """
        split = tfds_split
        is_empty = False
        sharded = input_context is not None and input_context.num_input_pipelines > 1
        if sharded:
            parts = tfds.even_splits(tfds_split, n=input_context.num_input_pipelines)
            split = parts[input_context.input_pipeline_id]
            # With fewer examples than pipelines the last parts are empty,
            # which TFDS rejects ("corresponds to no data").
            is_empty = builder.info.splits[split].num_examples == 0

        # TFDS 4.9.10's defaults apply otherwise: it interleaves 16 record
        # files (1 for data sets written in a fixed order) with AUTOTUNE
        # parallel reads, and caches data sets under 250 MiB in memory unless
        # that would freeze a shuffled file order.
        read_config = tfds.ReadConfig(
            shuffle_seed=seed,
            add_tfds_id=True,
            # TFDS rejects shuffled reads of data sets written in a fixed order
            # unless this guard is off. Training does not need that order.
            enable_ordering_guard=False,
        )
        dataset = builder.as_dataset(
            split=tfds_split if is_empty else split,
            shuffle_files=shuffle,
            decoders=decoders,
            read_config=read_config,
        )
        if is_empty:
            dataset = dataset.take(0)
        dataset = dataset.map(to_record, num_parallel_calls=tf.data.AUTOTUNE)

        if sharded:
            # Each pipeline already reads only its part; a strategy must not
            # split it further.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.OFF
            )
            dataset = dataset.with_options(options)
        return dataset

    return read
