"""Opens the training and validation splits of a data set in any supported form.

`dataset` names the form:

- `"folder"`: an ImageNet-style folder tree under `data_dir`.
- `"tfrecord"`: `train-*-of-*` and `validation-*-of-*` TFRecord shards in
  `data_dir`, as written by `build_tfrecords` or the common ImageNet scripts.
- `"tfds:NAME"`: the TensorFlow Datasets data set NAME, kept in `data_dir`
  (None for the TFDS default, ~/tensorflow_datasets).
"""

import os

from alexnet_tf.data import image_folder

FOLDER = "folder"
TFRECORD = "tfrecord"
TFDS_PREFIX = "tfds:"


def check_dataset_name(dataset):
    """Raises ValueError unless `dataset` is "folder", "tfrecord" or "tfds:NAME"."""
    if dataset in (FOLDER, TFRECORD):
        return
    if dataset.startswith(TFDS_PREFIX) and dataset[len(TFDS_PREFIX):]:
        return
    raise ValueError(
        f"Unknown dataset {dataset!r}. Use 'folder' for a folder tree, 'tfrecord' "
        "for TFRecord shards or 'tfds:NAME' for a TensorFlow Datasets data set, "
        "such as tfds:imagenet2012."
    )


def check_data_dir(dataset, data_dir):
    """Raises ValueError if `data_dir` is None for a form that needs it.

    TFDS has a default data folder; folder trees and TFRecord shards do not.
    """
    if data_dir is None and not dataset.startswith(TFDS_PREFIX):
        raise ValueError(
            f"--data_dir is missing, which --dataset={dataset} requires. Pass the folder "
            "that contains the data set."
        )


def open_source(
    dataset,
    data_dir,
    split,
    class_names=None,
    validation_labels=None,
    label_offset=None,
    tfds_manual_dir=None,
):
    """Opens one split as a `records.Source`.

    Args:
        dataset: "folder", "tfrecord" or "tfds:NAME".
        data_dir: where the data set is, see the module docstring.
        split: `image_folder.TRAIN_SPLIT` or `image_folder.VALIDATION_SPLIT`.
        class_names: the training split's class names, which fix the labels
            of a folder tree's validation split; ignored by the other forms,
            which store labels.
        validation_labels: label file of a flat validation folder; folder
            trees only.
        label_offset: value subtracted from stored TFRecord labels; None for
            the default of `tfrecords.open_tfrecords`.
        tfds_manual_dir: folder of manually downloaded files, such as the
            ILSVRC-2012 tar files for tfds:imagenet2012.

    Returns:
        A `records.Source`.
    """
    check_dataset_name(dataset)
    if dataset == FOLDER:
        label_file = validation_labels if split == image_folder.VALIDATION_SPLIT else None
        return image_folder.open_folder(data_dir, split, class_names, label_file)

    # The other forms are imported when used: importing TFDS takes seconds.
    # pylint: disable=g-import-not-at-top
    if dataset == TFRECORD:
        from alexnet_tf.data import tfrecords

        return tfrecords.open_tfrecords(
            data_dir, split, label_offset=label_offset, class_names=class_names
        )

    from alexnet_tf.data import tfds_source

    return tfds_source.open_tfds(
        dataset[len(TFDS_PREFIX):], split, data_dir=data_dir, manual_dir=tfds_manual_dir
    )


def read_class_names_file(path):
    """Returns the non-blank lines of a text file of class names, in order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it names no class or a class twice.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Class names file not found: {path!r}. Pass --class_names_file=FILE "
            "with one class name per line, in label order."
        )
    with open(path, encoding="utf-8") as file:
        names = [line.strip() for line in file if line.strip()]

    duplicates = sorted({name for name in names if names.count(name) > 1})
    if not names or duplicates:
        raise ValueError(
            f"{path!r} must list distinct class names, one per line. Found "
            f"{len(names)} names, repeated: {duplicates[:10]}."
        )
    return tuple(names)


def open_train_and_validation(dataset, data_dir, class_names_file=None, **kwargs):
    """Opens both splits and checks that they agree on the classes.

    Args:
        dataset: "folder", "tfrecord" or "tfds:NAME".
        data_dir: where the data set is.
        class_names_file: for TFRecord shards without `dataset_info.json`, a
            text file of class names in label order, see `read_class_names_file`.
        **kwargs: further arguments of `open_source`, except `class_names`.

    Returns:
        `(train_source, validation_source)`.

    Raises:
        ValueError: if the validation split's classes differ from the
            training split's.
    """
    class_names = None
    if class_names_file:
        if dataset != TFRECORD:
            raise ValueError(
                f"--class_names_file is for --dataset={TFRECORD}; the {dataset} form "
                "stores its class names. Drop the flag."
            )
        class_names = read_class_names_file(class_names_file)

    train = open_source(
        dataset, data_dir, image_folder.TRAIN_SPLIT, class_names=class_names, **kwargs
    )
    validation = open_source(
        dataset, data_dir, image_folder.VALIDATION_SPLIT, class_names=train.class_names, **kwargs
    )
    if tuple(validation.class_names) != tuple(train.class_names):
        raise ValueError(
            f"The validation split ({validation.description}) has "
            f"{len(validation.class_names)} classes and the training split "
            f"({train.description}) {len(train.class_names)}, or they are in a "
            "different order, so labels would not match. Rebuild both splits from "
            "one set of classes."
        )
    return train, validation
