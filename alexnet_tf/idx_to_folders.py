r"""Writes an IDX image dataset (MNIST format) as an ImageNet-style folder tree.

    python -m alexnet_tf.idx_to_folders --idx_dir=/usr/share/datasets/fashion-mnist \
        --output_dir=data/fashion_mnist --class_names=T-shirt_top,Trouser,...

reads `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
`t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]`, the file names
of MNIST, Fashion-MNIST and KMNIST, and writes one PNG per image:

    OUTPUT_DIR/train/<class name>/00000.png
    OUTPUT_DIR/validation/<class name>/00000.png

This is the layout `alexnet_tf.train` reads; bring other data sets into it the
same way. An existing, complete output folder from the same input is left as
it is; any other existing output folder is an error, never overwritten.
"""

import gzip
import json
import os
import shutil

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

FLAGS = flags.FLAGS

flags.DEFINE_string("idx_dir", None, "Folder with the four IDX files.")
flags.DEFINE_string("output_dir", None, "Folder to create with train/ and validation/.")
flags.DEFINE_list("class_names", None, "Folder name of each label, in label order, "
                  "comma-separated. Default: the label numbers.")
flags.mark_flags_as_required(["idx_dir", "output_dir"])

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "validation": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions.
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension.
_MARKER_FILE = ".idx_to_folders.json"


def _find_file(idx_dir, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(idx_dir, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{name}[.gz] not found in {idx_dir!r}. For Fashion-MNIST on Debian, run "
        "'apt-get install dataset-fashion-mnist' and pass "
        "--idx_dir=/usr/share/datasets/fashion-mnist."
    )


def _read_idx(path, expected_magic):
    """Reads an IDX file of unsigned bytes into an array of its stated shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as file:
        data = file.read()

    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"{path!r} is not an IDX file of the expected kind: magic number {magic}, "
            f"expected {expected_magic}."
        )
    num_dims = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims)]
    offset = 4 + 4 * num_dims
    expected_bytes = offset + int(np.prod(shape))
    if len(data) != expected_bytes:
        raise ValueError(
            f"{path!r} is truncated or corrupt: {len(data)} bytes, expected "
            f"{expected_bytes} for shape {shape}."
        )
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def read_split(idx_dir, split):
    """Returns (images uint8 [N, H, W], labels uint8 [N]) of one split."""
    images_name, labels_name = _SPLIT_FILES[split]
    images = _read_idx(_find_file(idx_dir, images_name), _IMAGES_MAGIC)
    labels = _read_idx(_find_file(idx_dir, labels_name), _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"The {split} split has {len(images)} images but {len(labels)} labels."
        )
    return images, labels


def write_split(images, labels, class_names, split_dir):
    """Writes each image as a PNG into the folder of its class."""
    for name in class_names:
        os.makedirs(os.path.join(split_dir, name), exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        path = os.path.join(split_dir, class_names[label], f"{index:05d}.png")
        tf.io.write_file(path, tf.io.encode_png(image[:, :, np.newaxis]))


def convert(idx_dir, output_dir, class_names=None):
    """Converts the IDX files in `idx_dir` into a folder tree at `output_dir`.

    Returns:
        Dict of image counts per split.

    Raises:
        FileExistsError: if `output_dir` exists and is not this conversion's
            complete output.
        ValueError: if a label has no class name.
    """
    splits = {split: read_split(idx_dir, split) for split in _SPLIT_FILES}
    num_labels = max(int(labels.max()) for _, labels in splits.values()) + 1
    if class_names is None:
        class_names = [str(label) for label in range(num_labels)]
    if len(class_names) < num_labels or len(set(class_names)) != len(class_names):
        raise ValueError(
            f"Expected {num_labels} distinct class names, one per label. "
            f"Received: {class_names}"
        )

    marker = {
        "idx_dir": os.path.abspath(idx_dir),
        "class_names": list(class_names),
        "counts": {split: int(len(labels)) for split, (_, labels) in splits.items()},
    }
    marker_path = os.path.join(output_dir, _MARKER_FILE)
    if os.path.exists(output_dir):
        if os.path.isfile(marker_path):
            with open(marker_path) as file:
                if json.load(file) == marker:
                    logging.info("%s is already complete; nothing to do.", output_dir)
                    return marker["counts"]
        raise FileExistsError(
            f"Output folder {output_dir!r} already exists and is not a complete "
            "conversion of these files. Pass a new --output_dir or remove it."
        )

    staging_dir = os.path.normpath(output_dir) + ".partial"
    shutil.rmtree(staging_dir, ignore_errors=True)
    for split, (images, labels) in splits.items():
        logging.info("Writing %d %s images.", len(images), split)
        write_split(images, labels, class_names, os.path.join(staging_dir, split))
    with open(os.path.join(staging_dir, _MARKER_FILE), "w") as file:
        json.dump(marker, file, indent=2)
    os.rename(staging_dir, output_dir)
    logging.info("Wrote %s: %s images.", output_dir, marker["counts"])
    return marker["counts"]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        convert(FLAGS.idx_dir, FLAGS.output_dir, FLAGS.class_names)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    app.run(main)
