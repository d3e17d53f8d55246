"""Scores a trained AlexNet on a validation split with one or ten crops per image.

At test time the paper (Krizhevsky, Sutskever and Hinton, NIPS 2012, section
4.1) averages the softmax outputs of ten crops of each image: the four corner
crops and the centre crop, and their horizontal reflections. `evaluate` does
that with `num_crops=10`, or scores the central crop alone with `num_crops=1`,
as the validation during training does. It returns the top-1 and top-5 error,
the top-1 accuracy of each class and the confusion matrix. `write_results`
stores them as JSON and TensorBoard summaries, and `format_results` prints
them as a table in the layout of the paper's results.

The model comes from a training run's model directory (`load_model_dir`) or
from its exported SavedModel (`load_saved_model`).
"""

import dataclasses
import functools
import os
import time
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import preprocessing
from alexnet_tf import serving
from alexnet_tf.data import bad_images as bad_images_lib
from alexnet_tf.data import image_folder
from alexnet_tf.data import input_pipeline
from alexnet_tf.data import sources
from alexnet_tf.data import tfrecords

CROP_CHOICES = (1, 10)
TOP_K = 5

# The confusion matrix image gets about this many pixels a side, so that a
# matrix of a few classes is not a few pixels wide: each class gets
# CONFUSION_IMAGE_SIDE // num_classes pixels, at least 1. Above
# MAX_CONFUSION_IMAGE_SIDE classes the matrix is shrunk by averaging blocks,
# so 1000 ImageNet classes still give one pixel each.
CONFUSION_IMAGE_SIDE = 512
MAX_CONFUSION_IMAGE_SIDE = 1024

# Up to this many classes, the printed results list every class; above it,
# only the WORST_CLASSES_SHOWN with the lowest accuracy.
MAX_CLASSES_PRINTED = 20
WORST_CLASSES_SHOWN = 10

_PROGRESS_LOG_SECONDS = 30


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained model to evaluate, with the settings its inputs need.

    Attributes:
        description: names the model in logs and in the results table.
        class_names: the class names, indexed by the model's outputs.
        image_size: side of the model's input, in pixels.
        resize_size: shorter side the crops are taken from, in pixels.
        epoch: training epochs behind the weights, or None when unknown.
        info: what the results JSON records about where the model comes from.
        classify_images: maps float32 images `(N, image_size, image_size, 3)`,
            preprocessed, to float32 probabilities `(N, num_classes)`, or None
            when the model has no such function.
        classify_image_bytes: maps a string tensor `(N,)` of encoded image
            files to float32 probabilities `(N, num_classes)`, taking the
            central crop itself, or None when the model has no such function.
    """

    description: str
    class_names: tuple
    image_size: int
    resize_size: int
    epoch: Optional[int]
    info: dict
    classify_images: Optional[Callable] = None
    classify_image_bytes: Optional[Callable] = None


def load_model_dir(model_dir, checkpoint_path=None):
    """Rebuilds a training run's model from its model config and a checkpoint.

    Args:
        model_dir: the model directory of a training run.
        checkpoint_path: a checkpoint prefix, or None for the latest.

    Returns:
        A `Classifier` that takes preprocessed images.

    Raises:
        FileNotFoundError: if `model_dir`, its model config or the checkpoint
            is missing.
    """
    if not tf.io.gfile.isdir(model_dir):
        raise FileNotFoundError(
            f"Model directory not found: {model_dir!r}. Pass the --model_dir of a "
            "training run."
        )
    model_config = model_dir_lib.read_model_config(model_dir)
    model = serving.build_model(model_config)
    checkpoint_path, epoch = model_dir_lib.restore_model(model_dir, model, checkpoint_path)
    classify = serving.classify_function(model, model_config["image_size"])

    return Classifier(
        description=f"{model_dir} {os.path.basename(checkpoint_path)}",
        class_names=tuple(model_config["class_names"]),
        image_size=model_config["image_size"],
        resize_size=model_config["resize_size"],
        epoch=epoch,
        info={"model_dir": os.path.abspath(model_dir), "checkpoint": checkpoint_path},
        classify_images=lambda images: classify(images)["probabilities"],
    )


def load_saved_model(saved_model_dir, num_crops):
    """Loads a SavedModel written by `serving.export_saved_model`.

    One crop goes through the `serving_default` signature, which decodes the
    image files and takes the central crop as served predictions do. Ten
    crops need the `classify_images` signature, which takes preprocessed
    images. Exports written before that signature existed lack it.

    Args:
        saved_model_dir: the export folder.
        num_crops: 1 or 10, the crops per image that the evaluation takes.

    Returns:
        A `Classifier`.

    Raises:
        FileNotFoundError: if there is no SavedModel or no `alexnet_export.json`.
        ValueError: if the signature that `num_crops` needs is missing.
    """
    if not tf.saved_model.contains_saved_model(saved_model_dir):
        raise FileNotFoundError(
            f"No SavedModel in {saved_model_dir!r}. Pass the export folder of a "
            "training run, such as MODEL_DIR/export."
        )
    info_path = os.path.join(saved_model_dir, serving.EXPORT_INFO_FILE)
    if not tf.io.gfile.exists(info_path):
        raise FileNotFoundError(
            f"{saved_model_dir!r} has no {serving.EXPORT_INFO_FILE}, so its class "
            "names and input size are unknown. Export the training run again with "
            "python -m alexnet_tf.export --model_dir=MODEL_DIR, or pass --model_dir."
        )
    export_info = model_dir_lib.read_json(info_path)
    loaded = tf.saved_model.load(saved_model_dir)

    needed = serving.SIGNATURE_NAME if num_crops == 1 else serving.CLASSIFY_SIGNATURE_NAME
    if needed not in loaded.signatures:
        raise ValueError(
            f"The SavedModel in {saved_model_dir!r} has no {needed!r} signature, which "
            f"--crops={num_crops} needs; it was exported by an older version. Export it "
            "again with python -m alexnet_tf.export "
            f"--model_dir={export_info.get('model_dir', 'MODEL_DIR')}."
        )

    # The closures keep `loaded` alive, which owns the variables of the signatures.
    def classify_images(images):
        return loaded.signatures[serving.CLASSIFY_SIGNATURE_NAME](images=images)["probabilities"]

    def classify_image_bytes(image_bytes):
        return loaded.signatures[serving.SIGNATURE_NAME](image_bytes=image_bytes)["probabilities"]

    epoch = export_info.get("epoch")
    return Classifier(
        description=saved_model_dir if epoch is None else f"{saved_model_dir} epoch {epoch}",
        class_names=tuple(export_info["class_names"]),
        image_size=export_info["image_size"],
        resize_size=export_info["resize_size"],
        epoch=epoch,
        info={"saved_model": os.path.abspath(saved_model_dir)},
        classify_images=(
            classify_images if serving.CLASSIFY_SIGNATURE_NAME in loaded.signatures else None
        ),
        classify_image_bytes=(
            classify_image_bytes if serving.SIGNATURE_NAME in loaded.signatures else None
        ),
    )


def open_validation_source(dataset, data_dir, class_names, **kwargs):
    """Opens the validation split and checks that its classes are the model's.

    Labels are indices into the model's `class_names`: a folder tree's class
    folders are labelled by those names, and TFRecord shards without
    `dataset_info.json` are taken to store them in that order.

    Args:
        dataset: "folder", "tfrecord" or "tfds:NAME".
        data_dir: where the data set is; for a folder tree, the folder that
            contains `validation/` (or `val/`). Only that split is read.
        class_names: the model's class names.
        **kwargs: further arguments of `sources.open_source`:
            `validation_labels`, `label_offset`, `tfds_manual_dir`.

    Returns:
        A `records.Source`.

    Raises:
        FileNotFoundError: if the data is missing.
        ValueError: if the data's classes differ from the model's.
    """
    sources.check_dataset_name(dataset)
    sources.check_data_dir(dataset, data_dir)

    names_for_source = class_names
    if dataset == sources.FOLDER:
        _check_class_folders(data_dir, class_names, kwargs.get("validation_labels"))
    elif dataset == sources.TFRECORD and tfrecords.read_dataset_info(data_dir) is not None:
        # Such shards store their class names, which are compared below.
        names_for_source = None

    source = sources.open_source(
        dataset, data_dir, image_folder.VALIDATION_SPLIT, class_names=names_for_source, **kwargs
    )
    if tuple(source.class_names) != tuple(class_names):
        raise ValueError(_class_mismatch_message(source, class_names))
    return source


def _check_class_folders(data_dir, class_names, validation_labels):
    """Raises unless every class folder of a folder tree's validation split is a model class."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"Data directory not found: {data_dir!r}. Pass --data_dir=DIR with the "
            "images in DIR/validation/<class>/<image> (or DIR/val/...)."
        )
    if validation_labels:
        return
    directory = image_folder.split_dir(data_dir, image_folder.VALIDATION_SPLIT)
    found = image_folder.list_class_names(directory)
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(
            f"{len(unknown)} of the {len(found)} class folders in {directory!r} are not "
            f"classes of the model, for example {unknown[:5]}. The model has "
            f"{len(class_names)} classes, such as {list(class_names[:5])}. Pass the data "
            "the model was trained on, or a model trained on these classes."
        )


def _class_mismatch_message(source, class_names):
    data_names = tuple(source.class_names)
    if len(data_names) != len(class_names):
        difference = f"{len(data_names)} classes and the model {len(class_names)}"
    else:
        index = next(i for i, (a, b) in enumerate(zip(data_names, class_names)) if a != b)
        difference = (
            f"the same number of classes as the model, but class {index} is "
            f"{data_names[index]!r} there and {class_names[index]!r} in the model"
        )
    return (
        f"{source.description} has {difference}, so its labels do not match the "
        "model's outputs. Pass the data set the model was trained on, or a model "
        "trained on these classes."
    )


def average_crop_probabilities(probabilities, num_crops):
    """Averages the softmax outputs of consecutive crops of each image.

    Args:
        probabilities: float tensor `(num_images * num_crops, num_classes)`,
            the crops of each image in consecutive rows.
        num_crops: crops per image.

    Returns:
        A float tensor `(num_images, num_classes)`.
    """
    num_classes = tf.shape(probabilities)[-1]
    per_image = tf.reshape(probabilities, [-1, num_crops, num_classes])
    return tf.reduce_mean(per_image, axis=1)


def top_classes(probabilities, k=TOP_K):
    """Returns the indices of the k most probable classes, most probable first.

    Args:
        probabilities: float tensor `(num_images, num_classes)`.
        k: number of classes to return, or all classes when there are fewer.

    Returns:
        An int32 array `(num_images, min(k, num_classes))`. Of equal
        probabilities, the lower class index comes first.
    """
    k = min(k, probabilities.shape[-1])
    return tf.math.top_k(probabilities, k=k).indices.numpy()


def compute_metrics(labels, predicted_classes, class_names):
    """Computes top-1 and top-5 error, per-class accuracy and the confusion matrix.

    Args:
        labels: int array `(num_images,)`, the true classes.
        predicted_classes: int array `(num_images, k)` from `top_classes`.
        class_names: the model's class names, indexed by label.

    Returns:
        `(metrics, confusion)`. `metrics` is a dict with `num_images`,
        `top_1_accuracy`, `top_5_accuracy`, `top_1_error`, `top_5_error`
        (fractions in [0, 1]) and `per_class`: for each class in label order a
        dict with `class_name`, `num_images` and `top_1_accuracy` (None for a
        class without images). With fewer than 5 classes, the top-5 figures
        count all classes. `confusion` is an int64 array `(num_classes,
        num_classes)` of image counts, rows the true classes and columns the
        top-1 predictions.
    """
    labels = np.asarray(labels)
    predicted_classes = np.asarray(predicted_classes)
    top_1_correct = predicted_classes[:, 0] == labels
    top_5_correct = np.any(predicted_classes == labels[:, np.newaxis], axis=1)

    confusion = tf.math.confusion_matrix(
        labels, predicted_classes[:, 0], num_classes=len(class_names), dtype=tf.int64
    ).numpy()

    top_1_accuracy = float(np.mean(top_1_correct))
    top_5_accuracy = float(np.mean(top_5_correct))
    metrics = {
        "num_images": int(len(labels)),
        "top_1_accuracy": top_1_accuracy,
        "top_5_accuracy": top_5_accuracy,
        "top_1_error": 1.0 - top_1_accuracy,
        "top_5_error": 1.0 - top_5_accuracy,
        "per_class": per_class_accuracy(confusion, class_names),
    }
    return metrics, confusion


def per_class_accuracy(confusion, class_names):
    """Returns the top-1 accuracy of each class from a confusion matrix.

    Returns:
        A list in label order of dicts with `class_name`, `num_images` and
        `top_1_accuracy`, which is None for a class without images.
    """
    row_sums = confusion.sum(axis=1)
    per_class = []
    for index, name in enumerate(class_names):
        num_images = int(row_sums[index])
        accuracy = float(confusion[index, index] / num_images) if num_images else None
        per_class.append(
            {"class_name": name, "num_images": num_images, "top_1_accuracy": accuracy}
        )
    return per_class


def confusion_image(confusion):
    """Draws a confusion matrix as a grayscale image for TensorBoard.

    Rows are the true classes and columns the predicted ones. Each row is
    divided by its number of images, so a pixel's brightness is the fraction
    of that class's images predicted as the column's class: white for all,
    black for none. Each class gets a square of pixels, see
    `CONFUSION_IMAGE_SIDE`.

    Args:
        confusion: int array `(num_classes, num_classes)` of counts.

    Returns:
        A float32 array `(side, side, 1)` with values in [0, 1].
    """
    counts = np.asarray(confusion, np.float64)
    row_sums = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    image = fractions.astype(np.float32)[..., np.newaxis]

    num_classes = len(counts)
    if num_classes > MAX_CONFUSION_IMAGE_SIDE:
        side = MAX_CONFUSION_IMAGE_SIDE
        return tf.image.resize(image, (side, side), method="area").numpy()
    pixels_per_class = max(1, CONFUSION_IMAGE_SIDE // num_classes)
    return np.repeat(np.repeat(image, pixels_per_class, axis=0), pixels_per_class, axis=1)


def _preprocess_function(classifier, num_crops):
    """Returns what the input pipeline applies to each image file, or None for the central crop."""
    if num_crops == 10:
        return functools.partial(
            preprocessing.ten_crops,
            image_size=classifier.image_size,
            resize_size=classifier.resize_size,
        )
    if classifier.classify_image_bytes is not None:
        # The model decodes and crops the files itself.
        return tf.identity
    return None


def _classify_each(classify_image_bytes, image_bytes, labels):
    """Classifies image files one by one, dropping those that fail to decode.

    Returns:
        `(probabilities, labels, num_failed)` of the images that decoded.
    """
    probabilities = []
    kept = []
    for index in range(len(labels)):
        try:
            probabilities.append(classify_image_bytes(image_bytes[index : index + 1]))
        except tf.errors.InvalidArgumentError:
            continue
        kept.append(index)
    num_failed = len(labels) - len(kept)
    if num_failed:
        logging.warning("Skipped %d image files that the SavedModel failed to decode.",
                        num_failed)
    if not kept:
        return None, labels[:0], num_failed
    return tf.concat(probabilities, axis=0), tf.gather(labels, kept), num_failed


def _batch_probabilities(classifier, num_crops, inputs, labels):
    """Returns `(probabilities, labels, num_failed)` for one batch of the pipeline."""
    if num_crops > 1:
        size = classifier.image_size
        crops = tf.reshape(inputs, [-1, size, size, 3])
        probabilities = classifier.classify_images(crops)
        return average_crop_probabilities(probabilities, num_crops), labels, 0

    if classifier.classify_image_bytes is None:
        return classifier.classify_images(inputs), labels, 0
    try:
        return classifier.classify_image_bytes(inputs), labels, 0
    except tf.errors.InvalidArgumentError:
        return _classify_each(classifier.classify_image_bytes, inputs, labels)


def evaluate(classifier, source, num_crops=10, batch_size=32, options=None):
    """Classifies every image of `source` and scores the predictions.

    Runs on one device: the first GPU when there is one, else the CPU.

    Args:
        classifier: a `Classifier` from `load_model_dir` or `load_saved_model`.
        source: a `records.Source` whose labels index `classifier.class_names`,
            see `open_validation_source`.
        num_crops: 10 for the paper's ten crops with averaged softmax
            outputs, or 1 for the central crop.
        batch_size: images per step. With ten crops the model takes ten times
            as many crops per call.
        options: an `input_pipeline.InputOptions`, or None for the defaults.

    Returns:
        `(results, confusion)`. `results` contains the metrics of
        `compute_metrics`, plus `crops`, `skipped_images` (image files that
        could not be read or decoded), `model`, `epoch`, `data`,
        `image_size`, `resize_size` and the classifier's `info`. `confusion`
        is the confusion matrix.

    Raises:
        ValueError: if `num_crops` is not 1 or 10, the classifier cannot take
            that many crops, or no image could be scored.
    """
    if num_crops not in CROP_CHOICES:
        raise ValueError(f"Expected num_crops in {CROP_CHOICES}. Received: {num_crops}")
    if num_crops > 1 and classifier.classify_images is None:
        raise ValueError(
            f"{classifier.description} takes only image files, not the preprocessed "
            f"crops that num_crops={num_crops} needs."
        )

    bad_images = bad_images_lib.BadImageLog(f"validation split of {source.description}")
    dataset = input_pipeline.make_dataset(
        source,
        batch_size,
        training=False,
        image_size=classifier.image_size,
        resize_size=classifier.resize_size,
        options=options,
        bad_images=bad_images,
        eval_preprocess=_preprocess_function(classifier, num_crops),
    )
    logging.info(
        "Evaluating %s on %s (%s images), %d crop(s) per image, %d images per step.",
        classifier.description, source.description, source.num_examples or "uncounted",
        num_crops, batch_size,
    )

    all_labels, all_top_classes, failed = _classify_dataset(classifier, num_crops, dataset)
    num_images = len(all_labels)
    if num_images == 0:
        raise ValueError(
            f"No image of {source.description} could be scored. Bad files skipped: "
            f"{bad_images.count} {bad_images.reasons()}; the log names them."
        )

    metrics, confusion = compute_metrics(all_labels, all_top_classes, classifier.class_names)
    if source.num_examples is not None:
        # Also counts files dropped by a decoding error that the checks missed.
        skipped = source.num_examples - num_images
    else:
        skipped = bad_images.count + failed
    if skipped:
        logging.warning("Skipped %d image files: %s", skipped, bad_images.reasons())

    results = {
        "model": classifier.description,
        **classifier.info,
        "epoch": classifier.epoch,
        "data": source.description,
        "crops": num_crops,
        "image_size": classifier.image_size,
        "resize_size": classifier.resize_size,
        "skipped_images": skipped,
        **metrics,
    }
    return results, confusion


def _classify_dataset(classifier, num_crops, dataset):
    """Returns the labels and top classes of every image, and the count that failed."""
    all_labels = []
    all_top_classes = []
    failed = 0
    start = time.perf_counter()
    last_log = start
    for inputs, labels in dataset:
        probabilities, labels, batch_failed = _batch_probabilities(
            classifier, num_crops, inputs, labels
        )
        failed += batch_failed
        if probabilities is not None:
            all_labels.append(labels.numpy())
            all_top_classes.append(top_classes(probabilities))

        now = time.perf_counter()
        if now - last_log > _PROGRESS_LOG_SECONDS:
            done = sum(len(batch) for batch in all_labels)
            logging.info("Scored %d images, %.1f images/s.", done, done / (now - start))
            last_log = now

    if not all_labels:
        return np.zeros([0], np.int32), np.zeros([0, TOP_K], np.int32), failed
    return np.concatenate(all_labels), np.concatenate(all_top_classes), failed


def crops_label(num_crops):
    """Returns "1crop" or "10crops", as used in output file and folder names."""
    return "1crop" if num_crops == 1 else f"{num_crops}crops"


def default_output_paths(num_crops, model_dir=None, saved_model_dir=None):
    """Returns the default `(results JSON path, TensorBoard folder)` of an evaluation.

    For a model directory: `MODEL_DIR/evaluation-10crops.json` beside the
    training run's `eval_results.json`, and `MODEL_DIR/eval/10crops`. For a
    SavedModel, a folder next to it, so that nothing is written into the
    export: `EXPORT_DIR-eval/evaluation-10crops.json` and
    `EXPORT_DIR-eval/10crops`. One TensorBoard folder per crop count keeps
    the two evaluations apart as two runs of the same tags.
    """
    label = crops_label(num_crops)
    if model_dir is not None:
        root = model_dir
        summary_dir = os.path.join(model_dir, "eval", label)
    else:
        root = f"{os.path.normpath(saved_model_dir)}-eval"
        summary_dir = os.path.join(root, label)
    return os.path.join(root, f"evaluation-{label}.json"), summary_dir


def check_output_path(path, overwrite=False):
    """Raises FileExistsError if writing `path` would replace a file without `overwrite`."""
    if tf.io.gfile.isdir(path):
        raise FileExistsError(f"{path!r} is a folder. Pass a file path to --output_json.")
    if tf.io.gfile.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} exists. Pass --overwrite to replace it, or --output_json=PATH "
            "to write elsewhere."
        )


def write_results(results, confusion, output_json, summary_dir):
    """Writes the results JSON and the TensorBoard scalars and confusion image.

    TensorBoard gets `top_1_error` and `top_5_error` and the image
    `confusion_matrix` (see `confusion_image`) at the step of the training
    epoch, or 0 when it is unknown.
    """
    parent = os.path.dirname(output_json)
    if parent:
        tf.io.gfile.makedirs(parent)
    model_dir_lib.write_json(output_json, results)

    step = results["epoch"] or 0
    writer = tf.summary.create_file_writer(summary_dir)
    with writer.as_default():
        tf.summary.scalar("top_1_error", results["top_1_error"], step=step)
        tf.summary.scalar("top_5_error", results["top_5_error"], step=step)
        tf.summary.image(
            "confusion_matrix",
            confusion_image(confusion)[np.newaxis],
            step=step,
            description="Rows are the true classes and columns the top-1 predictions. "
            "A pixel's brightness is the fraction of the row's images.",
        )
    writer.close()
    logging.info("Wrote %s and TensorBoard summaries to %s.", output_json, summary_dir)


def format_results(results, output_json):
    """Formats the results as the paper's results table and per-class accuracy lines."""
    crops = "1 crop" if results["crops"] == 1 else f"{results['crops']} crops"
    lines = [
        "| model | top-1 error | top-5 error |",
        "|---|---|---|",
        f"| {results['model']}, {crops} | {results['top_1_error']:.2%} | "
        f"{results['top_5_error']:.2%} |",
        "",
    ]

    per_class = results["per_class"]
    summary = f"{results['num_images']} images in {len(per_class)} classes"
    if results["skipped_images"]:
        skipped = results["skipped_images"]
        summary += f", {skipped} {'file' if skipped == 1 else 'files'} skipped"
    if len(per_class) <= MAX_CLASSES_PRINTED:
        shown = per_class
        lines.append(f"Top-1 accuracy per class ({summary}):")
    else:
        shown = sorted(
            (entry for entry in per_class if entry["num_images"]),
            key=lambda entry: entry["top_1_accuracy"],
        )[:WORST_CLASSES_SHOWN]
        lines.append(
            f"The {len(shown)} classes with the lowest top-1 accuracy ({summary}); all "
            f"classes are in {output_json}:"
        )

    width = max(len(entry["class_name"]) for entry in shown)
    for entry in shown:
        if entry["num_images"]:
            accuracy = f"{entry['top_1_accuracy']:7.2%}"
        else:
            accuracy = "    n/a"
        lines.append(
            f"  {entry['class_name']:<{width}}  {accuracy} of {entry['num_images']} images"
        )
    return "\n".join(lines)
