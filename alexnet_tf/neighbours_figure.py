"""Figure 4 of the AlexNet paper: predictions and the nearest training images.

Krizhevsky, Sutskever and Hinton ("ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012) show validation images with the
bars of their top-5 class probabilities, and the training images whose fc7
features (4096 values after the ReLU) lie nearest in Euclidean distance.
Images are read with `preprocessing.preprocess_for_eval`, as validation and
serving read them.
"""

import dataclasses
import os

from absl import logging
import keras
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
import tensorflow as tf

from alexnet_tf import preprocessing
from alexnet_tf.data import bad_images as bad_images_lib
from alexnet_tf.data import records

FEATURE_LAYER = "fc7"
TOP_K = 5
MIN_THUMBNAIL_SIZE = 64

# Layout in pixels: the space around and between images, and the text line
# under each image.
FIGURE_GAP = 4
CAPTION_HEIGHT = 14

_WHITE = (255, 255, 255)
_TEXT_COLOR = (0, 0, 0)
_BAR_TRACK_COLOR = (230, 230, 230)
_BAR_COLOR = (120, 150, 220)
# As in the paper's figure 4, the bar of the correct class is red.
_TRUE_CLASS_BAR_COLOR = (225, 80, 70)


@dataclasses.dataclass
class Neighbours:
    """Training images near one query image in feature space, nearest first.

    Attributes:
        distances: float32 `(n,)`, Euclidean distances of the fc7 features.
        labels: int32 `(n,)`, class indices.
        names: `n` record names of the images, file paths for folder trees.
        thumbnails: uint8 `(n, size, size, 3)`, the images the model saw.
    """

    distances: np.ndarray
    labels: np.ndarray
    names: list
    thumbnails: np.ndarray

    @classmethod
    def empty(cls, thumbnail_size):
        return cls(
            np.zeros([0], np.float32),
            np.zeros([0], np.int32),
            [],
            np.zeros([0, thumbnail_size, thumbnail_size, 3], np.uint8),
        )

    def merged(self, other, count):
        """Returns the `count` nearest images of `self` and `other`, nearest first.

        The sort is stable, so of equally distant images the earlier one wins.
        """
        distances = np.concatenate([self.distances, other.distances])
        order = np.argsort(distances, kind="stable")[:count]
        names = self.names + other.names
        return Neighbours(
            distances[order],
            np.concatenate([self.labels, other.labels])[order],
            [names[index] for index in order],
            np.concatenate([self.thumbnails, other.thumbnails])[order],
        )


@dataclasses.dataclass
class QueryResult:
    """One row of the neighbours figure.

    Attributes:
        name: the query's file path or record name.
        label: its class index, or -1 when unknown (image files).
        thumbnail: uint8 `(size, size, 3)`, the image the model saw.
        top_classes: int32 `(k,)`, class indices by falling probability,
            k = min(5, number of classes).
        top_probabilities: float32 `(k,)`.
        neighbours: the nearest training images.
    """

    name: str
    label: int
    thumbnail: np.ndarray
    top_classes: np.ndarray
    top_probabilities: np.ndarray
    neighbours: Neighbours


def feature_model(model, layer_name=FEATURE_LAYER):
    """Builds a model that maps images to `(features, logits)` in one pass.

    Args:
        model: a Keras functional model that outputs logits.
        layer_name: the layer whose output is the feature vector. fc7's
            output in this package's models is taken after its ReLU.

    Raises:
        ValueError: if the model has no layer `layer_name`.
    """
    layer_names = [layer.name for layer in model.layers]
    if layer_name not in layer_names:
        raise ValueError(
            f"Model {model.name!r} has no layer named {layer_name!r}, whose output the "
            f"neighbour search compares. Its layers: {layer_names}"
        )
    return keras.Model(model.inputs, [model.get_layer(layer_name).output, model.outputs[0]])


def _keep_valid(record, bad_images):
    valid, reason = bad_images_lib.check_image(record[records.IMAGE])
    return tf.cond(
        valid,
        lambda: tf.constant(True),
        lambda: bad_images.record_tensors(record[records.NAME], reason),
    )


def read_split(source, image_size, resize_size, batch_size, max_images=None, seed=None):
    """Reads a split's images with the evaluation preprocessing of serving.

    Bad image files (empty, truncated, not an image) are skipped and named in
    a warning, and so are files that still fail to decode.

    Args:
        source: a `records.Source`.
        image_size: side of the model's input, in pixels.
        resize_size: shorter side the central crop is taken from, in pixels.
        batch_size: images per batch.
        max_images: read at most this many valid images; None for all.
        seed: None to read in the source's order. An integer shuffles the
            files first: a folder tree lists its images class by class, so
            its first images would cover only a few classes. With TFRecord
            shards and TFDS it shuffles the files' order only.

    Returns:
        A `tf.data.Dataset` of `(images, labels, names)` batches: float32
        `(batch, image_size, image_size, 3)` mean subtracted, int32 `(batch,)`
        and string `(batch,)`.
    """
    bad_images = bad_images_lib.BadImageLog(source.description)
    dataset = source.read(shuffle=seed is not None, seed=seed)
    dataset = dataset.filter(lambda record: _keep_valid(record, bad_images))
    if max_images:
        dataset = dataset.take(max_images)

    def load(record):
        image = preprocessing.preprocess_for_eval(record[records.IMAGE], image_size, resize_size)
        return image, record[records.LABEL], record[records.NAME]

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.ignore_errors(log_warning=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def read_image_files(paths, image_size, resize_size, batch_size):
    """Reads image files as `read_split` reads a split, with unknown labels (-1).

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: if a file cannot be decoded as an image.
    """
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"Image files not found: {', '.join(missing)}. Check --images.")

    images = []
    for path in paths:
        try:
            images.append(
                preprocessing.preprocess_for_eval(tf.io.read_file(path), image_size, resize_size)
            )
        except tf.errors.InvalidArgumentError:
            raise ValueError(
                f"{path!r} could not be decoded as a JPEG, PNG, GIF or BMP image. "
                "Remove it from --images."
            ) from None
    labels = tf.fill([len(paths)], -1)
    return tf.data.Dataset.from_tensor_slices((tf.stack(images), labels, list(paths))).batch(
        batch_size
    )


def thumbnails(images, size):
    """Turns model inputs (mean subtracted) into uint8 `(count, size, size, 3)` images."""
    pixels = tf.image.resize(preprocessing.denormalize(images), (size, size), antialias=True)
    return np.round(np.clip(pixels.numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)


def _decode_names(names):
    return [name.decode("utf-8", "replace") for name in names.numpy()]


def predict_queries(features_model, query_dataset, thumbnail_size):
    """Runs the model on the query images.

    Returns:
        `(results, features)`: a list of `QueryResult` whose neighbours are
        still empty, and their features as a float32 array `(count, units)`.

    Raises:
        ValueError: if the dataset has no images.
    """
    results = []
    features = []
    for images, labels, names in query_dataset:
        batch_features, logits = features_model(images, training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
        top = tf.math.top_k(probabilities, k=min(TOP_K, probabilities.shape[-1]))
        batch_thumbnails = thumbnails(images, thumbnail_size)

        for index, name in enumerate(_decode_names(names)):
            results.append(
                QueryResult(
                    name=name,
                    label=int(labels[index]),
                    thumbnail=batch_thumbnails[index],
                    top_classes=top.indices[index].numpy(),
                    top_probabilities=top.values[index].numpy(),
                    neighbours=Neighbours.empty(thumbnail_size),
                )
            )
        features.append(keras.ops.convert_to_numpy(batch_features))

    if not results:
        raise ValueError(
            "No query image could be read. Check that the validation split contains valid images."
        )
    return results, np.concatenate(features)


def find_neighbours(features_model, query_features, train_dataset, num_neighbours, thumbnail_size):
    """Finds the training images nearest to each query by Euclidean fc7 distance.

    The training images stream through once in batches, and each query keeps
    only its `num_neighbours` best so far, so memory does not grow with the
    number of training images.

    Args:
        features_model: the model of `feature_model`.
        query_features: float32 `(queries, units)`.
        train_dataset: `(images, labels, names)` batches, as `read_split` gives.
        num_neighbours: images to find per query.
        thumbnail_size: side of the kept thumbnails, in pixels.

    Returns:
        A list of `Neighbours`, one per query.
    """
    nearest = [Neighbours.empty(thumbnail_size) for _ in query_features]
    num_images = 0
    for images, labels, names in train_dataset:
        features, _ = features_model(images, training=False)
        features = keras.ops.convert_to_numpy(features)
        labels = labels.numpy()
        names = _decode_names(names)
        batch_thumbnails = thumbnails(images, thumbnail_size)

        for index, query in enumerate(query_features):
            distances = np.linalg.norm(features - query, axis=1)
            candidates = Neighbours(distances, labels, names, batch_thumbnails)
            nearest[index] = nearest[index].merged(candidates, num_neighbours)
        num_images += len(names)

    logging.info("Compared %d queries with %d training images.", len(nearest), num_images)
    if num_images < num_neighbours:
        logging.warning(
            "Only %d training images were read, fewer than the %d neighbours requested.",
            num_images, num_neighbours,
        )
    return nearest


def figure_size(num_rows, num_neighbours, thumbnail_size):
    """Returns `(width, height)` in pixels of `draw_rows`' image.

    A row contains the query, a panel of top-5 bars two thumbnails wide, and the
    neighbours, each with a caption line below, separated and framed by
    `FIGURE_GAP` pixels:

        width = (num_neighbours + 3) * size + (num_neighbours + 4) * FIGURE_GAP
        height = num_rows * (size + CAPTION_HEIGHT + FIGURE_GAP) + FIGURE_GAP
    """
    width = (num_neighbours + 3) * thumbnail_size + (num_neighbours + 4) * FIGURE_GAP
    height = num_rows * (thumbnail_size + CAPTION_HEIGHT + FIGURE_GAP) + FIGURE_GAP
    return width, height


def _fit_text(draw, font, text, width):
    """Shortens `text` with "..." until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _draw_image(figure, draw, font, thumbnail, caption, left, top):
    figure.paste(Image.fromarray(thumbnail), (left, top))
    size = thumbnail.shape[0]
    draw.text((left, top + size + 1), _fit_text(draw, font, caption, size), fill=_TEXT_COLOR,
              font=font)


def _draw_bars(draw, font, result, class_names, left, top, width, height):
    """Draws one bar per top class, as long as its probability, with its name and value."""
    slot = height // TOP_K
    for rank, (index, probability) in enumerate(zip(result.top_classes, result.top_probabilities)):
        bar_top = top + rank * slot
        bar_bottom = bar_top + slot - 2
        color = _TRUE_CLASS_BAR_COLOR if index == result.label else _BAR_COLOR
        draw.rectangle([left, bar_top, left + width - 1, bar_bottom], fill=_BAR_TRACK_COLOR)
        bar_length = int(round(float(probability) * width))
        if bar_length > 0:
            draw.rectangle([left, bar_top, left + bar_length - 1, bar_bottom], fill=color)

        value = f"{probability:.2f}"
        value_width = draw.textlength(value, font=font)
        draw.text((left + width - 2 - value_width, bar_top), value, fill=_TEXT_COLOR, font=font)
        name = _fit_text(draw, font, class_names[index], width - value_width - 8)
        draw.text((left + 2, bar_top), name, fill=_TEXT_COLOR, font=font)


def _query_caption(result, class_names):
    if result.label >= 0:
        return class_names[result.label]
    return os.path.basename(result.name)


def draw_rows(results, class_names, thumbnail_size):
    """Draws the paper's figure 4: a row per query image.

    Each row shows the query with its true class (or file name) below it,
    bars of its top-5 class probabilities (red for the true class), and its
    nearest training images with their classes. The size follows
    `figure_size`.

    Args:
        results: a list of `QueryResult`.
        class_names: names of the model's classes, indexed by label.
        thumbnail_size: side of the thumbnails in `results`, in pixels.

    Returns:
        An RGB `PIL.Image.Image`.
    """
    num_neighbours = max(len(result.neighbours.names) for result in results)
    size = figure_size(len(results), num_neighbours, thumbnail_size)
    figure = Image.new("RGB", size, _WHITE)
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default()
    cell = thumbnail_size + FIGURE_GAP

    for row, result in enumerate(results):
        top = FIGURE_GAP + row * (thumbnail_size + CAPTION_HEIGHT + FIGURE_GAP)
        left = FIGURE_GAP
        _draw_image(figure, draw, font, result.thumbnail, _query_caption(result, class_names),
                    left, top)

        left += cell
        bars_width = 2 * thumbnail_size + FIGURE_GAP
        _draw_bars(draw, font, result, class_names, left, top, bars_width, thumbnail_size)

        left += bars_width + FIGURE_GAP
        neighbours = result.neighbours
        for thumbnail, label in zip(neighbours.thumbnails, neighbours.labels):
            _draw_image(figure, draw, font, thumbnail, class_names[label], left, top)
            left += cell
    return figure


def draw_figure(
    model, class_names, query_dataset, train_dataset, num_neighbours=6, thumbnail_size=96
):
    """Computes and draws the paper's figure 4 for the query images.

    Args:
        model: a Keras model with a layer "fc7" that outputs logits.
        class_names: names of its classes, indexed by label.
        query_dataset: `(images, labels, names)` batches of the query images,
            as `read_split` or `read_image_files` give.
        train_dataset: `(images, labels, names)` batches of the training
            images to search.
        num_neighbours: training images shown per query.
        thumbnail_size: side of each image in the figure, in pixels, at least 64.

    Returns:
        `(figure, results)`: an RGB `PIL.Image.Image` and the list of `QueryResult`.

    Raises:
        ValueError: if an argument is out of range or there are no query images.
    """
    if num_neighbours < 1 or thumbnail_size < MIN_THUMBNAIL_SIZE:
        raise ValueError(
            f"Expected num_neighbours >= 1 and thumbnail_size >= {MIN_THUMBNAIL_SIZE}. Received: "
            f"num_neighbours={num_neighbours}, thumbnail_size={thumbnail_size}"
        )

    features_model = feature_model(model)
    results, query_features = predict_queries(features_model, query_dataset, thumbnail_size)
    nearest = find_neighbours(
        features_model, query_features, train_dataset, num_neighbours, thumbnail_size
    )
    for result, neighbours in zip(results, nearest):
        result.neighbours = neighbours
    return draw_rows(results, class_names, thumbnail_size), results
