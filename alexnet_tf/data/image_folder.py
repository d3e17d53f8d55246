"""Lists the images and labels of an ImageNet-style folder tree.

The tree is `DATA_DIR/<split>/<class name>/<image file>`, with the splits
`train` and `validation` (or `val`). Labels are the indices of the sorted class
folder names of the training split. Files and folders whose names start with a
dot are ignored, and so are files without an image extension.
"""

import dataclasses
import os

from absl import logging

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
        raise ValueError(
            f"No class folders in {directory!r}: put the images of each class in "
            "their own subfolder, named after the class."
        )
    return tuple(class_names)


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


def list_images(data_dir, split, class_names=None):
    """Lists the image files of one split and their labels.

    Args:
        data_dir: the root of the folder tree.
        split: `TRAIN_SPLIT` or `VALIDATION_SPLIT`.
        class_names: the class names that define the labels, normally those of
            the training split. None reads them from this split's folders.

    Returns:
        An `ImageList`.

    Raises:
        FileNotFoundError: if the split's folder is missing.
        ValueError: if a class folder is empty, or the split has a class folder
            that is not in `class_names`.
    """
    directory = split_dir(data_dir, split)
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
