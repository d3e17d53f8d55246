"""Lists the images and labels of an ImageNet-style folder tree.

The tree is `DATA_DIR/<split>/<class name>/<image file>`, with the splits
`train` and `validation` (or `val`). Labels are the indices of the sorted class
folder names of the training split. Files and folders whose names start with a
dot are ignored, and so are files without an image extension.

The validation split may instead be one flat folder of images, as ILSVRC-2012
distributes it, with a label file that gives the class of each image.
"""

import dataclasses
import os

from absl import logging
import tensorflow as tf

from alexnet_tf.data import records

TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"
_SPLIT_FOLDERS = {TRAIN_SPLIT: ("train",), VALIDATION_SPLIT: ("validation", "val")}

# Matched case-insensitively. Decoding looks at the content, so a PNG named
# .JPEG still decodes.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp"})

_MAX_NAMED_SKIPPED_FILES = 5


@dataclasses.dataclass(frozen=True)
class ImageList:
    """The image files of one split.

    Attributes:
        paths: image file paths, sorted by class, then by path.
        labels: class index of each path, into `class_names`.
        class_names: the sorted class folder names of the training split.
    """

    paths: tuple
    labels: tuple
    class_names: tuple

    def __len__(self):
        return len(self.paths)


def _is_hidden(name):
    return name.startswith(".")


def split_dir(data_dir, split):
    """Returns the folder of a split under `data_dir`.

    Raises:
        FileNotFoundError: if `data_dir` or the split's folder does not exist.
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"Data directory not found: {data_dir!r}. Pass --data_dir=DIR with "
            "DIR/train/<class>/<image> and DIR/validation/<class>/<image>."
        )

    for folder in _SPLIT_FOLDERS[split]:
        path = os.path.join(data_dir, folder)
        if os.path.isdir(path):
            return path

    expected = " or ".join(os.path.join(data_dir, folder) for folder in _SPLIT_FOLDERS[split])
    raise FileNotFoundError(
        f"Missing {split} split: expected a folder {expected} with one subfolder "
        "of images per class."
    )


def list_class_names(directory):
    """Returns the sorted names of the visible subfolders of `directory`.

    Raises:
        ValueError: if there are none.
    """
    class_names = sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.is_dir() and not _is_hidden(entry.name)
    )
    if not class_names:
        if _list_visible_images(directory):
            raise ValueError(
                f"No class folders in {directory!r}, only images. Put the images of "
                "each class in their own subfolder, named after the class. A flat "
                "validation folder, as ILSVRC-2012 ships it, instead needs "
                "--validation_labels=FILE with the class of each image."
            )
        raise ValueError(
            f"No class folders in {directory!r}: put the images of each class in "
            "their own subfolder, named after the class."
        )
    return tuple(class_names)


def _list_visible_images(directory):
    """Returns the sorted paths of the image files directly inside `directory`."""
    return sorted(
        entry.path
        for entry in os.scandir(directory)
        if entry.is_file()
        and not _is_hidden(entry.name)
        and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
    )


def _list_class_files(class_dir):
    """Returns (image paths, skipped paths) under `class_dir`, each sorted."""
    image_paths = []
    skipped_paths = []
    for root, folders, files in os.walk(class_dir, followlinks=True):
        folders[:] = [folder for folder in folders if not _is_hidden(folder)]
        for name in files:
            if _is_hidden(name):
                continue
            path = os.path.join(root, name)
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                image_paths.append(path)
            else:
                skipped_paths.append(path)
    return sorted(image_paths), sorted(skipped_paths)


def list_images(data_dir, split, class_names=None, label_file=None):
    """Lists the image files of one split and their labels.

    Args:
        data_dir: the root of the folder tree.
        split: `TRAIN_SPLIT` or `VALIDATION_SPLIT`.
        class_names: the class names that define the labels, normally those of
            the training split. None reads them from this split's folders.
        label_file: for a split stored as one flat folder of images, the file
            with the class of each image, see `read_label_file`. Needs
            `class_names`.

    Returns:
        An `ImageList`.

    Raises:
        FileNotFoundError: if the split's folder is missing.
        ValueError: if a class folder is empty, or the split has a class folder
            that is not in `class_names`, or the label file does not match
            the images.
    """
    directory = split_dir(data_dir, split)
    if label_file:
        return _list_flat_images(directory, class_names, label_file)
    found_names = list_class_names(directory)
    if class_names is None:
        class_names = found_names

    unknown = sorted(set(found_names) - set(class_names))
    if unknown:
        raise ValueError(
            f"The {split} split in {directory!r} has class folders that the "
            f"training split lacks: {unknown[:10]}. Rename or remove them, or add "
            "them to the training split."
        )
    missing = sorted(set(class_names) - set(found_names))
    if missing:
        logging.warning(
            "The %s split has no folder for %d of %d classes, for example %s.",
            split, len(missing), len(class_names), missing[:5],
        )

    paths = []
    labels = []
    skipped = []
    label_of = {name: index for index, name in enumerate(class_names)}
    for name in found_names:
        class_dir = os.path.join(directory, name)
        image_paths, skipped_paths = _list_class_files(class_dir)
        if not image_paths:
            raise ValueError(
                f"Class folder {class_dir!r} contains no image files "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}). Add images or remove "
                "the folder."
            )
        paths.extend(image_paths)
        labels.extend([label_of[name]] * len(image_paths))
        skipped.extend(skipped_paths)

    if skipped:
        logging.warning(
            "Ignored %d files without an image extension in %s, for example %s.",
            len(skipped), directory, skipped[:_MAX_NAMED_SKIPPED_FILES],
        )
    logging.info(
        "Found %d images in %d classes in %s.", len(paths), len(found_names), directory
    )
    return ImageList(tuple(paths), tuple(labels), tuple(class_names))


def read_label_file(label_file, class_names):
    """Reads one label per line and returns them as class indices.

    Each line holds a class name, such as a WordNet synset like n01751748, or
    a class index counting from 0 in the order of the sorted class names. The
    ILSVRC-2012 devkit's ILSVRC2012_validation_ground_truth.txt counts from 1 in
    a different order, that of its meta.mat, so it needs converting to synsets
    first. Blank lines at the end are ignored.

    Args:
        label_file: path of the text file.
        class_names: the class names of the training split.

    Returns:
        A list of int labels, one per line.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if a line is neither a known class name nor a valid index.
    """
    if not os.path.isfile(label_file):
        raise FileNotFoundError(
            f"Label file not found: {label_file!r}. Pass --validation_labels=FILE "
            "with one class name or class index per line."
        )
    with open(label_file, encoding="utf-8") as file:
        lines = [line.strip() for line in file.read().rstrip().splitlines()]

    label_of = {name: index for index, name in enumerate(class_names)}
    labels = []
    for line_number, line in enumerate(lines, start=1):
        if line in label_of:
            labels.append(label_of[line])
        elif line.isdigit() and int(line) < len(class_names):
            labels.append(int(line))
        else:
            raise ValueError(
                f"Line {line_number} of {label_file!r} is {line!r}, which is neither "
                f"one of the {len(class_names)} training class names (such as "
                f"{class_names[0]!r}) nor a class index from 0 to {len(class_names) - 1}."
            )
    return labels


def _list_flat_images(directory, class_names, label_file):
    """Lists a flat folder of images whose classes a label file gives, in file-name order."""
    if not class_names:
        raise ValueError("A flat image folder needs the class names of the training split.")
    paths = _list_visible_images(directory)
    if not paths:
        raise ValueError(
            f"No image files directly inside {directory!r}, but --validation_labels "
            "was given: it is for one flat folder of images."
        )

    labels = read_label_file(label_file, class_names)
    if len(labels) != len(paths):
        raise ValueError(
            f"{label_file!r} has {len(labels)} labels but {directory!r} has "
            f"{len(paths)} images. The file needs one line per image, in the "
            "order of the sorted file names."
        )
    logging.info(
        "Found %d images in %s, labelled by %s.", len(paths), directory, label_file
    )
    return ImageList(tuple(paths), tuple(labels), tuple(class_names))


def _read_file(path, label):
    return records.make_record(tf.io.read_file(path), label, path)


def source_from_image_list(image_list, description):
    """Wraps an `ImageList` as a `records.Source` whose records name each file by path.

    The list of paths is sharded across input pipelines and shuffled whole,
    so no shuffle buffer is needed.
    """

    def read(input_context=None, shuffle=False, seed=None):
        dataset = tf.data.Dataset.from_tensor_slices(
            (list(image_list.paths), tf.constant(image_list.labels, tf.int32))
        )
        if input_context and input_context.num_input_pipelines > 1:
            dataset = dataset.shard(
                input_context.num_input_pipelines, input_context.input_pipeline_id
            )
        if shuffle:
            dataset = dataset.shuffle(len(image_list), seed=seed, reshuffle_each_iteration=True)
        return dataset.map(_read_file, num_parallel_calls=tf.data.AUTOTUNE)

    return records.Source(
        description=description,
        class_names=image_list.class_names,
        num_examples=len(image_list),
        read=read,
        fully_shuffled=True,
    )


def open_folder(data_dir, split, class_names=None, label_file=None):
    """Returns a `records.Source` for one split of a folder tree; see `list_images`."""
    image_list = list_images(data_dir, split, class_names, label_file)
    return source_from_image_list(image_list, f"image folder {split_dir(data_dir, split)}")
