r"""Prints the top-5 classes of images with an exported SavedModel.

    python -m alexnet_tf.predict --saved_model=DIR IMAGE [IMAGE ...]

Uses only TensorFlow and the SavedModel's `serving_default` signature, as a
serving client would.
"""

import os

from absl import app
from absl import flags
import tensorflow as tf

FLAGS = flags.FLAGS

flags.DEFINE_string("saved_model", None, "Folder of a SavedModel written by alexnet_tf.export "
                    "or alexnet_tf.train.")
flags.DEFINE_integer("batch_size", 32, "Images per call of the model.", lower_bound=1)
flags.mark_flag_as_required("saved_model")


def _load_signature(saved_model_dir):
    if not tf.saved_model.contains_saved_model(saved_model_dir):
        raise SystemExit(
            f"error: no SavedModel in {saved_model_dir!r}. Pass the export folder of a "
            "training run, such as MODEL_DIR/export."
        )
    return tf.saved_model.load(saved_model_dir).signatures["serving_default"]


def _read_files(paths):
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f"error: image files not found: {', '.join(missing)}")
    contents = []
    for path in paths:
        with open(path, "rb") as file:
            contents.append(file.read())
    return contents


def _format_top_classes(outputs, row):
    names = outputs["top_5_names"].numpy()[row]
    probabilities = outputs["top_5_probabilities"].numpy()[row]
    return ", ".join(
        f"{name.decode()} {probability:.3f}" for name, probability in zip(names, probabilities)
    )


def _predict_batch(serve, paths, contents):
    """Prints one line per image; returns the paths that failed to decode."""
    try:
        outputs = serve(image_bytes=tf.constant(contents))
    except tf.errors.InvalidArgumentError:
        if len(paths) == 1:
            return list(paths)
        # Find the undecodable files one by one, still predicting the others.
        failed = []
        for path, image_bytes in zip(paths, contents):
            failed.extend(_predict_batch(serve, [path], [image_bytes]))
        return failed

    for row, path in enumerate(paths):
        print(f"{path}: {_format_top_classes(outputs, row)}")
    return []


def main(argv):
    image_paths = argv[1:]
    if not image_paths:
        raise app.UsageError("Pass one or more image files after the flags.")

    serve = _load_signature(FLAGS.saved_model)
    image_bytes = _read_files(image_paths)
    failed = []
    for start in range(0, len(image_paths), FLAGS.batch_size):
        end = start + FLAGS.batch_size
        failed.extend(_predict_batch(serve, image_paths[start:end], image_bytes[start:end]))

    if failed:
        raise SystemExit(
            f"error: could not decode as images, so no prediction for: {', '.join(failed)}"
        )


if __name__ == "__main__":
    app.run(main)
