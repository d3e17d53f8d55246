r"""Draws figures 3 and 4 of the AlexNet paper for a training run's model.

    python -m alexnet_tf.figures --model_dir=DIR --figure=kernels --output=kernels.png
    python -m alexnet_tf.figures --model_dir=DIR --figure=neighbours --data_dir=DATA \
        --output=neighbours.png [--images=a.jpg,b.png]

Krizhevsky, Sutskever and Hinton ("ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012) show in figure 3 the 96 kernels of
conv1, and in figure 4 validation images with their top-5 predictions and the
training images whose fc7 features lie nearest to theirs.

`kernel_figure` and `neighbours_figure` draw them; this module loads the
model, writes the PNG file and reads the flags. An existing output file is
replaced only with --overwrite. The kernel grid is also written to
TensorBoard during training, see `callbacks.ConvKernels`.
"""

import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from alexnet_tf import input_flags
from alexnet_tf import kernel_figure
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import neighbours_figure
from alexnet_tf import serving

FLAGS = flags.FLAGS

KERNELS = "kernels"
NEIGHBOURS = "neighbours"
FIGURES = (KERNELS, NEIGHBOURS)


def load_model(model_dir, checkpoint_path=None):
    """Rebuilds a training run's model from its model config and restores its weights.

    Args:
        model_dir: the model directory of a training run.
        checkpoint_path: a checkpoint prefix, or None for the latest.

    Returns:
        `(model, model_config)`.

    Raises:
        FileNotFoundError: if the run has no model config or no checkpoint.
    """
    model_config = model_dir_lib.read_model_config(model_dir)
    model = serving.build_model(model_config)
    model_dir_lib.restore_model(model_dir, model, checkpoint_path)
    return model, model_config


def check_output_path(path, overwrite=False):
    """Checks that a PNG can be written to `path` without losing a file.

    Raises:
        ValueError: if `path` does not end in ".png".
        FileExistsError: if `path` exists and `overwrite` is False, or is a folder.
    """
    if not path.lower().endswith(".png"):
        raise ValueError(f"Output {path!r} must be a .png file. Pass --output=FILE.png.")
    if os.path.isdir(path):
        raise FileExistsError(f"Output {path!r} is a folder. Pass --output=FILE.png.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"Output {path!r} already exists. Pass --overwrite to replace it, or another --output."
        )


def save_png(image, path, overwrite=False):
    """Writes a PIL image or uint8 array as a PNG file, creating its folder.

    Raises:
        ValueError, FileExistsError: as `check_output_path`.
    """
    check_output_path(path, overwrite)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)

    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    # Exclusive creation, so a file that appeared since the check is kept.
    with open(path, "wb" if overwrite else "xb") as file:
        image.save(file, format="PNG")
    logging.info("Wrote %s (%dx%d pixels).", path, image.width, image.height)


def define_flags():
    """Defines the flags of the command; called only when it runs as `__main__`."""
    flags.DEFINE_string("model_dir", None, "Model directory of a training run.")
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to draw, such as "
                        "MODEL_DIR/checkpoints/ckpt-5. Default: the latest.")
    flags.DEFINE_enum("figure", None, FIGURES, "kernels: conv1's kernels, as the paper's "
                      "figure 3. neighbours: query images with their top-5 predictions and "
                      "nearest training images in fc7 feature space, as the paper's figure 4.")
    flags.DEFINE_string("output", None, "PNG file to write.")
    flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")

    flags.DEFINE_integer("kernel_scale", 4, "kernels: enlargement factor of each kernel.",
                         lower_bound=1)
    flags.DEFINE_integer("kernel_columns", 16, "kernels: kernels per row; conv1's kernels are "
                         "split into one block per group of conv2, stacked top to bottom.",
                         lower_bound=1)
    flags.DEFINE_enum("kernel_contrast", kernel_figure.PER_KERNEL, kernel_figure.KERNEL_CONTRASTS,
                      "kernels: per_kernel stretches each kernel to the full 0-255 range; "
                      "global uses one range for all kernels.")

    input_flags.define_dataset_flag()
    input_flags.define_source_flags()
    flags.adopt_module_key_flags(input_flags)
    flags.DEFINE_list("images", [], "neighbours: image files to use as queries. Default: "
                      "--num_images images of the validation split.")
    flags.DEFINE_integer("num_images", 5, "neighbours: validation images to use as queries "
                         "when --images is empty.", lower_bound=1)
    flags.DEFINE_integer("num_neighbours", 6, "neighbours: nearest training images shown per "
                         "query.", lower_bound=1)
    flags.DEFINE_integer("max_train_images", 5000, "neighbours: training images searched, "
                         "drawn at random with --seed; 0 for the whole training split.",
                         lower_bound=0)
    flags.DEFINE_integer("seed", 0, "neighbours: seed of the random choice of validation "
                         "and training images.")
    flags.DEFINE_integer("thumbnail_size", 96, "neighbours: side of each image in the figure, "
                         "in pixels.", lower_bound=neighbours_figure.MIN_THUMBNAIL_SIZE)
    flags.DEFINE_integer("batch_size", 32, "neighbours: images per call of the model.",
                         lower_bound=1)
    flags.mark_flags_as_required(["model_dir", "figure", "output"])


def _kernels_from_flags(model):
    return kernel_figure.conv1_kernel_grid(
        model,
        columns=FLAGS.kernel_columns,
        scale=FLAGS.kernel_scale,
        contrast=FLAGS.kernel_contrast,
    )


def _neighbours_from_flags(model, model_config):
    train_source, validation_source = input_flags.open_sources_from_flags()
    class_names = list(model_config["class_names"])
    if list(train_source.class_names) != class_names:
        raise ValueError(
            f"The training split ({train_source.description}) has "
            f"{len(train_source.class_names)} classes and the model {len(class_names)}, or "
            "they are in another order. Pass the data the model was trained on."
        )

    image_size = model_config["image_size"]
    resize_size = model_config["resize_size"]
    if FLAGS.images:
        queries = neighbours_figure.read_image_files(
            FLAGS.images, image_size, resize_size, FLAGS.batch_size
        )
    else:
        queries = neighbours_figure.read_split(
            validation_source, image_size, resize_size, FLAGS.batch_size,
            max_images=FLAGS.num_images, seed=FLAGS.seed,
        )
    train_dataset = neighbours_figure.read_split(
        train_source, image_size, resize_size, FLAGS.batch_size,
        max_images=FLAGS.max_train_images or None, seed=FLAGS.seed,
    )

    figure, results = neighbours_figure.draw_figure(
        model, class_names, queries, train_dataset, FLAGS.num_neighbours, FLAGS.thumbnail_size
    )
    for result in results:
        print(_summary_line(result, class_names))
    return figure


def _summary_line(result, class_names):
    """Returns "NAME: top-1 CLASS P; nearest NAME (distance D), ..." for one query."""
    top_class = class_names[result.top_classes[0]]
    nearest = ", ".join(
        f"{name} (distance {distance:.4g})"
        for name, distance in zip(result.neighbours.names, result.neighbours.distances)
    )
    return f"{result.name}: top-1 {top_class} {result.top_probabilities[0]:.3f}; nearest {nearest}"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    try:
        check_output_path(FLAGS.output, FLAGS.overwrite)
        model, model_config = load_model(FLAGS.model_dir, FLAGS.checkpoint)
        if FLAGS.figure == KERNELS:
            figure = _kernels_from_flags(model)
        else:
            figure = _neighbours_from_flags(model, model_config)
        save_png(figure, FLAGS.output, FLAGS.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        # User errors: the message names the value and the fix.
        raise SystemExit(f"error: {error}") from None
    print(f"Wrote {FLAGS.output}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
