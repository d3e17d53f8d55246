r"""Measures how many training images per second the input pipeline delivers.

    python -m alexnet_tf.benchmark --mode=input --dataset=folder --data_dir=DIR
    python -m alexnet_tf.benchmark --mode=input --dataset=tfrecord --data_dir=SHARDS

`--mode=input` iterates the training pipeline (reading, decoding, random crop,
flip, PCA lighting, batching) without a model, so it shows the highest step
rate the data can feed. Warm-up batches are excluded. Then several windows of
batches are timed, and the median and spread of their rates are logged and
printed as one summary line, with the CPU time per image.
"""

import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

FLAGS = flags.FLAGS

# TensorFlow is imported only by the functions of the entry point, because
# the PyTorch processes in bench/ import this module for
# `measure_images_per_second`, and importing TensorFlow takes seconds and
# starts threads that would compete with them.
# pylint: disable=g-import-not-at-top

INPUT_MODE = "input"


def measure_images_per_second(
    dataset, batch_size, warmup_batches, num_windows, window_batches,
    cpu_clock=time.process_time,
):
    """Times windows of batches drawn from `dataset` and returns their image rates.

    Works on any iterable of batches: a `tf.data.Dataset`, a PyTorch
    `DataLoader`, a generator. The first `warmup_batches` batches are drawn
    untimed, so start-up, filling of prefetch buffers and tf.data autotuning
    do not count. Then `num_windows` windows of `window_batches` batches are
    timed back to back.

    The CPU time per image is also returned. Unlike the rate, it barely
    changes when other processes compete for the cores, so it compares
    pipelines measured on a busy machine.

    Args:
        dataset: an iterable of batches of `batch_size` images each.
        batch_size: images per batch, used to turn batches into images.
        warmup_batches: batches drawn before timing starts; 0 or more.
        num_windows: timed windows, at least 1.
        window_batches: batches per window, at least 1.
        cpu_clock: returns the CPU seconds used so far by whatever produces
            the batches. The default counts all threads of this process,
            which covers tf.data; a loader with worker processes needs a
            clock that adds theirs.

    Returns:
        A dict with `median`, `min`, `max`, `q1` and `q3` of the per-window
        rates in images per second, `window_rates` (the list of them, in
        order), `cpu_ms_per_image` and `cores_used` over all windows,
        `warmup_seconds`, and the arguments `batch_size`, `warmup_batches`,
        `num_windows` and `window_batches`.

    Raises:
        ValueError: if an argument is out of range, or `dataset` ends before
            the warm-up and all windows are drawn.
    """
    _check_counts(batch_size, warmup_batches, num_windows, window_batches)
    iterator = iter(dataset)
    needed = warmup_batches + num_windows * window_batches

    start = time.perf_counter()
    _draw(iterator, warmup_batches, drawn_before=0, needed=needed)
    warmup_end = time.perf_counter()

    window_rates = []
    window_start = warmup_end
    cpu_start = cpu_clock()
    for window in range(num_windows):
        _draw(iterator, window_batches, warmup_batches + window * window_batches, needed)
        window_end = time.perf_counter()
        window_rates.append(window_batches * batch_size / (window_end - window_start))
        window_start = window_end
    cpu_seconds = cpu_clock() - cpu_start

    result = summarize_rates(window_rates)
    num_images = num_windows * window_batches * batch_size
    result.update(
        cpu_ms_per_image=1e3 * cpu_seconds / num_images,
        cores_used=cpu_seconds / (window_end - warmup_end),
        warmup_seconds=warmup_end - start,
        batch_size=batch_size,
        warmup_batches=warmup_batches,
        num_windows=num_windows,
        window_batches=window_batches,
    )
    logging.info("Input rate: %s.", format_rates(result))
    return result


def _check_counts(batch_size, warmup_batches, num_windows, window_batches):
    for name, value, minimum in (
        ("batch_size", batch_size, 1),
        ("warmup_batches", warmup_batches, 0),
        ("num_windows", num_windows, 1),
        ("window_batches", window_batches, 1),
    ):
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}.")


def _draw(iterator, count, drawn_before, needed):
    """Draws `count` elements from `iterator`, failing if it ends first."""
    for index in range(count):
        try:
            next(iterator)
        except StopIteration:
            raise ValueError(
                f"The dataset ended after {drawn_before + index} batches, but the "
                f"warm-up and the windows need {needed}. Repeat the dataset, or lower "
                "the warm-up, the number of windows or the batches per window."
            ) from None


def summarize_rates(window_rates):
    """Returns the median, extremes and quartiles of per-window rates, as a dict."""
    rates = np.asarray(window_rates, dtype=np.float64)
    q1, median, q3 = np.percentile(rates, [25, 50, 75])
    return {
        "median": float(median),
        "min": float(rates.min()),
        "max": float(rates.max()),
        "q1": float(q1),
        "q3": float(q3),
        "window_rates": [float(rate) for rate in rates],
    }


def format_rates(result):
    """Formats a result of `measure_images_per_second` as one line of text."""
    return (
        f"median {result['median']:.1f} images/s, min {result['min']:.1f}, max "
        f"{result['max']:.1f}, interquartile range {result['q1']:.1f} to {result['q3']:.1f}, "
        f"over {result['num_windows']} windows of {result['window_batches']} batches of "
        f"{result['batch_size']} after {result['warmup_batches']} warm-up batches; "
        f"{result['cpu_ms_per_image']:.2f} ms of CPU per image, "
        f"{result['cores_used']:.2f} cores busy"
    )


def define_flags():
    """Defines the command-line flags of the benchmark.

    They are defined only when this module runs as a program, so that scripts
    that import `measure_images_per_second` can define flags of the same names.
    """
    from alexnet_tf import input_flags
    from alexnet_tf import preprocessing
    from alexnet_tf.data import image_folder

    flags.DEFINE_enum("mode", INPUT_MODE, list(_RUNNERS), "What to measure. input: the training "
                      "input pipeline alone, without a model.")
    input_flags.define_input_flags()
    flags.DEFINE_string("data_dir", None, "Where the data set is. folder: the root of the "
                        "tree. tfrecord: the folder of the shards. tfds: the TFDS data "
                        "folder; default ~/tensorflow_datasets.")
    flags.DEFINE_enum("split", image_folder.TRAIN_SPLIT,
                      [image_folder.TRAIN_SPLIT, image_folder.VALIDATION_SPLIT],
                      "Split to read. It goes through the training pipeline either way.")
    flags.DEFINE_integer("global_batch_size", 128, "Images per batch.", lower_bound=1)
    flags.DEFINE_integer("image_size", 227, "Side of the random crop, in pixels.",
                         lower_bound=1)
    flags.DEFINE_integer("resize_size", preprocessing.DEFAULT_RESIZE_SIZE, "Shorter side, in "
                         "pixels, of the resized image that crops are taken from.",
                         lower_bound=1)
    flags.DEFINE_float("pca_stddev", preprocessing.DEFAULT_PCA_STDDEV, "Standard deviation "
                       "of the PCA colour augmentation coefficients; 0 turns it off.",
                       lower_bound=0.0)
    flags.DEFINE_integer("seed", 0, "Seed of the shuffle and the augmentation.")
    flags.DEFINE_integer("warmup_batches", 20, "Batches drawn before timing starts, so that "
                         "start-up and tf.data autotuning do not count.", lower_bound=0)
    flags.DEFINE_integer("num_windows", 5, "Timed windows; the median and spread are taken "
                         "over them.", lower_bound=1)
    flags.DEFINE_integer("window_batches", 10, "Batches per timed window.", lower_bound=1)

    flags.register_multi_flags_validator(
        ["image_size", "resize_size"],
        lambda values: values["resize_size"] >= values["image_size"],
        message="--resize_size must be at least --image_size, because crops of "
        "image_size pixels are taken from an image whose shorter side is resize_size.",
    )


def run_input_mode():
    """Measures the training input pipeline that the flags describe; returns the result."""
    from alexnet_tf import input_flags
    from alexnet_tf.data import input_pipeline
    from alexnet_tf.data import sources

    options = input_flags.input_options_from_flags()
    source = sources.open_source(FLAGS.dataset, FLAGS.data_dir, FLAGS.split)
    logging.info("Reading %s with %s.", source.description, options)

    dataset = input_pipeline.make_dataset(
        source, FLAGS.global_batch_size, training=True, image_size=FLAGS.image_size,
        resize_size=FLAGS.resize_size, pca_stddev=FLAGS.pca_stddev, seed=FLAGS.seed,
        options=options,
    )
    return measure_images_per_second(
        dataset, FLAGS.global_batch_size, FLAGS.warmup_batches, FLAGS.num_windows,
        FLAGS.window_batches,
    )


# The function that measures each --mode. A mode that times training steps
# adds its own entry.
_RUNNERS = {INPUT_MODE: run_input_mode}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    try:
        result = _RUNNERS[FLAGS.mode]()
    except (FileNotFoundError, ValueError) as error:
        # User errors: the message names the value and the fix.
        raise SystemExit(f"error: {error}") from None
    print(f"{FLAGS.mode} {FLAGS.dataset} {FLAGS.data_dir}: {format_rates(result)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
