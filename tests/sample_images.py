"""Real photos bundled with scikit-image and scikit-learn, and generated oddities."""

import io
import os

import numpy as np
from PIL import Image
import skimage
import sklearn


def skimage_path(name):
    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def sklearn_path(name):
    return os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", name)


# RGB JPEG, RGB JPEG, RGB PNG, grayscale PNG, RGBA PNG.
REAL_PHOTOS = (
    sklearn_path("china.jpg"),
    sklearn_path("flower.jpg"),
    skimage_path("chelsea.png"),
    skimage_path("camera.png"),
    skimage_path("logo.png"),
)


def read_bytes(path):
    with open(path, "rb") as file:
        return file.read()


def encode(array, image_format, mode=None, **save_kwargs):
    """Encodes a uint8 array with Pillow, converting it to `mode` first."""
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_kwargs)
    return buffer.getvalue()


def gradient_image(height, width):
    """A uint8 RGB image whose red grows down the rows and green along the columns."""
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    columns = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    image = np.stack(
        [np.broadcast_to(rows, (height, width)), np.broadcast_to(columns, (height, width)),
         np.full((height, width), 128.0)],
        axis=-1,
    )
    return image.astype(np.uint8)


# Mean colour of each class in `write_color_tree`: classes a network separates
# within a few steps.
CLASS_COLORS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}


def write_color_tree(root, num_train, num_validation, size=40, seed=0):
    """Writes `root/{train,validation}/<colour>/<n>.{png,jpg}` with noisy colour images.

    Returns:
        The sorted class names.
    """
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("validation", num_validation)):
        for name, color in CLASS_COLORS.items():
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for index in range(count):
                noise = rng.normal(0, 25, (size, size, 3))
                pixels = np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)
                image_format, extension = ("PNG", "png") if index % 2 else ("JPEG", "jpg")
                with open(os.path.join(folder, f"{index:03d}.{extension}"), "wb") as file:
                    file.write(encode(pixels, image_format))
    return sorted(CLASS_COLORS)
