"""Exports a trained model as a SavedModel that takes encoded images.

The `serving_default` signature takes `image_bytes`, a string tensor of shape
`[None]` with JPEG, PNG, GIF or BMP files, runs the evaluation preprocessing of
`alexnet_tf.preprocessing` inside the graph, and returns:

- `probabilities`: float32 `[N, num_classes]`, the softmax of the logits.
- `top_5_classes`: int32 `[N, k]`, class indices by falling probability.
- `top_5_names`: string `[N, k]`, the class names of those indices.
- `top_5_probabilities`: float32 `[N, k]`.

Here k is 5, or the number of classes when there are fewer.

The `classify_images` signature takes `images`, float32
`[None, image_size, image_size, 3]` already preprocessed (cropped and mean
subtracted, as `preprocessing.preprocess_for_eval` or
`preprocessing.ten_crops` return them), and returns `probabilities`. It lets
`alexnet_tf.evaluate` average the predictions of several crops of one image.
"""

import os
import shutil

from absl import logging
import keras
import tensorflow as tf

from alexnet_tf import model as model_lib
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import precision
from alexnet_tf import preprocessing

EXPORT_INFO_FILE = "alexnet_export.json"
SIGNATURE_NAME = "serving_default"
CLASSIFY_SIGNATURE_NAME = "classify_images"


def build_model(model_config):
    """Builds the model described by a run's model config, for inference.

    Model configs written before variants existed have no `variant`: they
    describe the paper's network. The model computes in float32 whatever
    the run's `--dtype` and Keras' global policy, because the checkpoints of
    every dtype contain float32 variables.
    """
    return model_lib.AlexNet(
        num_classes=len(model_config["class_names"]),
        image_size=model_config["image_size"],
        dropout_rate=model_config.get("dropout_rate", 0.5),
        variant=model_config.get("variant", "paper"),
        dtype=precision.policy_name(precision.FLOAT32),
    )


def check_export_dir(export_dir, model_dir):
    """Checks that exporting into `export_dir` loses nothing of the user's.

    An empty or missing folder is fine, and so is an earlier export of the same
    training run, which the new export replaces: it can be made again from the
    checkpoints. Runs are matched by the `run_id` of their model config, so a
    moved or copied model directory still matches its exports.

    Raises:
        FileExistsError: if `export_dir` contains anything else.
    """
    if not tf.io.gfile.isdir(export_dir) or not tf.io.gfile.listdir(export_dir):
        if tf.io.gfile.exists(export_dir) and not tf.io.gfile.isdir(export_dir):
            raise FileExistsError(
                f"Export path {export_dir!r} is a file. Pass another --export_dir."
            )
        return

    info_path = os.path.join(export_dir, EXPORT_INFO_FILE)
    model_config = model_dir_lib.read_model_config(model_dir, missing_ok=True)
    if model_config and tf.io.gfile.exists(info_path):
        info = model_dir_lib.read_json(info_path)
        if info.get("run_id") and info.get("run_id") == model_config.get("run_id"):
            return
    raise FileExistsError(
        f"Export directory {export_dir!r} is not empty and is not an export of "
        f"{model_dir!r}. Pass another --export_dir, or move that folder away."
    )


def _serving_function(model, class_names, image_size, resize_size):
    """Returns the tf.function behind the serving signature."""
    class_name_table = tf.constant(class_names, tf.string)
    top_k = min(5, len(class_names))

    def preprocess(image_bytes):
        return preprocessing.preprocess_for_eval(image_bytes, image_size, resize_size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes):
        images = tf.map_fn(
            preprocess,
            image_bytes,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
        )
        logits = model(images, training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
        top = tf.math.top_k(probabilities, k=top_k)
        return {
            "probabilities": probabilities,
            "top_5_classes": top.indices,
            "top_5_names": tf.gather(class_name_table, top.indices),
            "top_5_probabilities": top.values,
        }

    return serve


def classify_function(model, image_size):
    """Returns the tf.function behind the `classify_images` signature.

    It maps float32 images `[N, image_size, image_size, 3]`, preprocessed, to
    a dict with the softmax `probabilities` `[N, num_classes]`.
    """

    @tf.function(
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32,
                                       name="images")]
    )
    def classify(images):
        logits = model(images, training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32))}

    return classify


def export_saved_model(model, model_config, export_dir, info):
    """Writes the serving SavedModel of `model` into `export_dir`.

    The SavedModel is written to a temporary sibling folder first and moved in
    place at the end, so an interrupted export leaves the previous one intact.

    Args:
        model: a Keras AlexNet with trained weights.
        model_config: the run's model config (class names, image and resize size).
        export_dir: destination folder, which `check_export_dir` accepts.
        info: dict written beside the SavedModel as `alexnet_export.json`; it
            must name the `model_dir` and `run_id` the export comes from.

    Returns:
        `export_dir`.
    """
    check_export_dir(export_dir, info["model_dir"])
    serve = _serving_function(
        model,
        list(model_config["class_names"]),
        model_config["image_size"],
        model_config["resize_size"],
    )

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE_NAME, serve)
    archive.add_endpoint(
        CLASSIFY_SIGNATURE_NAME, classify_function(model, model_config["image_size"])
    )

    export_dir = os.path.normpath(export_dir)
    staging_dir = f"{export_dir}.partial"
    if tf.io.gfile.exists(staging_dir):
        tf.io.gfile.rmtree(staging_dir)
    archive.write_out(staging_dir, verbose=False)
    model_dir_lib.write_json(os.path.join(staging_dir, EXPORT_INFO_FILE), info)

    previous_dir = f"{export_dir}.previous"
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rename(export_dir, previous_dir, overwrite=True)
    tf.io.gfile.rename(staging_dir, export_dir)
    if tf.io.gfile.exists(previous_dir):
        shutil.rmtree(previous_dir)

    logging.info("Exported the SavedModel to %s.", export_dir)
    return export_dir


def export_from_checkpoint(model_dir, export_dir, checkpoint_path=None):
    """Rebuilds a run's model from its checkpoint and exports it for serving.

    Args:
        model_dir: the model directory of a training run.
        export_dir: destination folder of the SavedModel.
        checkpoint_path: a checkpoint prefix, or None for the latest.

    Returns:
        `export_dir`.
    """
    model_config = model_dir_lib.read_model_config(model_dir)
    check_export_dir(export_dir, model_dir)
    model = build_model(model_config)
    checkpoint_path, epoch = model_dir_lib.restore_model(model_dir, model, checkpoint_path)

    info = {
        "model_dir": os.path.abspath(model_dir),
        "run_id": model_config.get("run_id"),
        "checkpoint": checkpoint_path,
        "epoch": epoch,
        "class_names": list(model_config["class_names"]),
        "image_size": model_config["image_size"],
        "resize_size": model_config["resize_size"],
        "variant": model_config.get("variant", "paper"),
    }
    return export_saved_model(model, model_config, export_dir, info)
