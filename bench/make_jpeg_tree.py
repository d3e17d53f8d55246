r"""Writes an ImageNet-like folder tree of JPEGs for input-pipeline benchmarks.

    python bench/make_jpeg_tree.py --output_dir=/tmp/jpeg_tree

writes OUTPUT_DIR/train/class_NN/class_NN_NNNNN.JPEG and the same under
validation/, which `alexnet_tf.data.build_tfrecords` requires. Each image is a random crop of one of the
colour photos that ship with scikit-image and scikit-learn, scaled to an
ImageNet-like size, mirrored half of the time, and saved as a baseline JPEG of
quality 90 with 4:2:0 chroma subsampling, as most ImageNet files are. Sizes:

- 65% landscape, 500 pixels wide and 333 to 375 high;
- 20% portrait, 333 to 375 wide and 500 high;
- 10% other shapes, longer side 300 to 500, aspect ratio 1 to 2;
- 5% large, longer side 800 to 1600, aspect ratio 4:3 to 3:2.

The same seed gives the same files with the same Pillow build. Running the
command again with the same settings keeps the existing tree; other settings
on an existing folder are an error, never an overwrite.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
import skimage
import sklearn

FLAGS = flags.FLAGS

flags.DEFINE_string("output_dir", None, "Folder to create with train/ and validation/.")
flags.DEFINE_integer("num_classes", 10, "Number of class folders.", lower_bound=1)
flags.DEFINE_integer("images_per_class", 100, "Training images per class.", lower_bound=1)
flags.DEFINE_integer("validation_images_per_class", 10, "Validation images per class; 0 "
                     "writes no validation split.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the crops, sizes and flips.")
flags.DEFINE_integer("quality", 90, "JPEG quality, 1 to 95.", lower_bound=1, upper_bound=95)
flags.mark_flag_as_required("output_dir")

_SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_MARKER_FILE = ".make_jpeg_tree.json"

# (probability, kind) of the image shapes listed in the module docstring.
_SHAPE_KINDS = ((0.65, "landscape"), (0.20, "portrait"), (0.10, "other"), (0.05, "large"))


def photo_paths():
    """Returns the paths of the colour photos bundled with scikit-image and scikit-learn."""
    skimage_dir = os.path.join(os.path.dirname(skimage.__file__), "data")
    sklearn_dir = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    paths = [os.path.join(skimage_dir, name) for name in _SKIMAGE_PHOTOS]
    paths += [os.path.join(sklearn_dir, name) for name in _SKLEARN_PHOTOS]

    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"Sample photos not found: {missing}. Install scikit-image and scikit-learn "
            "with their data files (pip install scikit-image scikit-learn)."
        )
    return paths


def draw_size(rng):
    """Draws an ImageNet-like `(width, height)` in pixels."""
    kinds = [kind for _, kind in _SHAPE_KINDS]
    probabilities = [probability for probability, _ in _SHAPE_KINDS]
    kind = rng.choice(kinds, p=probabilities)

    if kind == "landscape":
        return 500, int(rng.integers(333, 376))
    if kind == "portrait":
        return int(rng.integers(333, 376)), 500

    if kind == "other":
        longer = int(rng.integers(300, 501))
        aspect = rng.uniform(1.0, 2.0)
    else:
        longer = int(rng.integers(800, 1601))
        aspect = rng.uniform(4 / 3, 3 / 2)
    shorter = int(round(longer / aspect))
    return (longer, shorter) if rng.random() < 0.5 else (shorter, longer)


def make_image(photo, size, rng):
    """Crops a random window of `photo` with the aspect ratio of `size` and scales it.

    Args:
        photo: an RGB `PIL.Image`.
        size: `(width, height)` of the result, in pixels.
        rng: a `numpy.random.Generator`.

    Returns:
        An RGB `PIL.Image` of `size`, mirrored left to right half of the time.
    """
    width, height = size
    aspect = width / height

    # The largest window of the target shape that fits, then 70% to 100% of its side.
    max_width = min(photo.width, photo.height * aspect)
    window_width = max_width * rng.uniform(0.7, 1.0)
    window_height = window_width / aspect
    left = rng.uniform(0, photo.width - window_width)
    top = rng.uniform(0, photo.height - window_height)

    box = (left, top, left + window_width, top + window_height)
    image = photo.resize(size, Image.Resampling.BICUBIC, box=box)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _settings():
    return {
        "num_classes": FLAGS.num_classes,
        "images_per_class": FLAGS.images_per_class,
        "validation_images_per_class": FLAGS.validation_images_per_class,
        "seed": FLAGS.seed,
        "quality": FLAGS.quality,
    }


def _existing_tree_matches(output_dir, settings):
    """Returns whether `output_dir` holds a finished tree of `settings`.

    Raises:
        FileExistsError: if `output_dir` holds anything else.
    """
    if not os.path.exists(output_dir) or not os.listdir(output_dir):
        return False

    marker = os.path.join(output_dir, _MARKER_FILE)
    if os.path.isfile(marker):
        with open(marker) as file:
            if json.load(file) == settings:
                return True
    raise FileExistsError(
        f"{output_dir!r} exists and is not a finished tree with these settings "
        f"{settings}. Pass another --output_dir, or remove this folder."
    )


def write_tree(output_dir, settings):
    """Writes the tree; returns the (width, height, file size in bytes) of each image."""
    rng = np.random.default_rng(settings["seed"])
    photos = [Image.open(path).convert("RGB") for path in photo_paths()]

    splits = [("train", settings["images_per_class"])]
    if settings["validation_images_per_class"]:
        splits.append(("validation", settings["validation_images_per_class"]))

    stats = []
    for split, count in splits:
        for class_index in range(settings["num_classes"]):
            class_name = f"class_{class_index:02d}"
            folder = os.path.join(output_dir, split, class_name)
            os.makedirs(folder, exist_ok=True)
            for index in range(count):
                photo = photos[rng.integers(len(photos))]
                size = draw_size(rng)
                path = os.path.join(folder, f"{class_name}_{index:05d}.JPEG")
                make_image(photo, size, rng).save(
                    path, "JPEG", quality=settings["quality"], subsampling="4:2:0"
                )
                stats.append((size[0], size[1], os.path.getsize(path)))

    with open(os.path.join(output_dir, _MARKER_FILE), "w") as file:
        json.dump(settings, file)
    return stats


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    settings = _settings()
    try:
        if _existing_tree_matches(FLAGS.output_dir, settings):
            logging.info("%s already holds this tree; nothing to do.", FLAGS.output_dir)
            return
        stats = np.array(write_tree(FLAGS.output_dir, settings), dtype=np.float64)
    except (FileExistsError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None

    widths, heights, file_sizes = stats.T
    print(
        f"Wrote {len(stats)} JPEGs to {FLAGS.output_dir}: mean {widths.mean():.0f}x"
        f"{heights.mean():.0f} pixels, {(widths * heights).mean() / 1e3:.0f} kilopixels, "
        f"{file_sizes.mean() / 1e3:.0f} kB per file, {file_sizes.sum() / 1e6:.0f} MB in all."
    )


if __name__ == "__main__":
    app.run(main)
