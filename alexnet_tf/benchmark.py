r"""Measures images per second: of the input pipeline, of training steps, of inference.

    python -m alexnet_tf.benchmark --mode=input --dataset=folder --data_dir=DIR
    python -m alexnet_tf.benchmark --mode=train --variant=torchvision
    python -m alexnet_tf.benchmark --mode=train --data=real --dataset=tfrecord --data_dir=SHARDS
    python -m alexnet_tf.benchmark --mode=infer --dtype=bfloat16 --jit_compile

`--mode=input` iterates the training pipeline (reading, decoding, random crop,
flip, PCA lighting, batching) without a model, so it shows the highest step
rate the data can feed.

`--mode=train` runs the training steps of `model.fit`: the forward pass, sparse
categorical cross-entropy, the gradients and the update of
`optimizer.MomentumWithWeightDecay`, with the model compiled as
`training.train_and_evaluate` compiles it. `--mode=infer` runs forward passes
in inference mode, as `model.predict` does. Both read `--data`:

- `synthetic` (the default): one batch of random images and labels, made once
  on each replica's device and fed to every step, as tf_cnn_benchmarks does.
  The rate is the model's alone: no input pipeline, no copy to the device.
- `real`: the training input pipeline of `--dataset` and `--data_dir`, as
  `--mode=input` reads it, so the rate is that of training end to end.

Every mode first runs warm-up steps untimed, so that tracing, XLA compilation,
filling of prefetch buffers and tf.data autotuning do not count. Then several
windows of steps are timed, and the median and spread of their rates are
logged and printed as one summary line, with the CPU time per image.
`--output_json=FILE` keeps the result and the settings for scripts.
"""

import itertools
import json
import os
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
TRAIN_MODE = "train"
INFER_MODE = "infer"
SYNTHETIC_DATA = "synthetic"
REAL_DATA = "real"

# The learning-rate schedule of a training benchmark only decides when the rate
# drops, which costs nothing. Epochs of this many steps keep it at its peak.
_SCHEDULE_STEPS_PER_EPOCH = 1_000_000
# Standard deviation of synthetic pixels on the 0-255 scale that the model
# takes. ImageNet's channels have 57 to 58: 255 times torchvision's 0.229,
# 0.224 and 0.225.
_SYNTHETIC_PIXEL_STDDEV = 57.5


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
    logging.info("Rate: %s.", format_rates(result))
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


def build_model(mode, variant, num_classes, image_size, global_batch_size, jit_compile=False,
                steps_per_execution=1, seed=0, dtype="float32"):
    """Builds and compiles AlexNet for `mode`, in the current strategy scope.

    For `TRAIN_MODE` the model, its optimizer, loss and metrics are those of
    `training.train_and_evaluate`, built by the same function, so the step
    measured is the step that training runs. For `INFER_MODE` the model is
    compiled without optimizer or loss.

    Args:
        mode: `TRAIN_MODE` or `INFER_MODE`.
        variant: an entry of `model.VARIANTS`.
        num_classes: number of output logits.
        image_size: side of the input, in pixels.
        global_batch_size: images per step over all replicas; it scales the
            learning rate as in training.
        jit_compile: whether to compile the steps with XLA.
        steps_per_execution: steps that each call of Keras' step function runs.
        seed: seed of the weight initializers.
        dtype: an entry of `precision.DTYPES`, applied as in training.

    Returns:
        A compiled `keras.Model`.
    """
    from alexnet_tf import model as model_lib
    from alexnet_tf import precision
    from alexnet_tf import training

    if mode == TRAIN_MODE:
        config = training.TrainConfig(
            data_dir=None, model_dir=None, global_batch_size=global_batch_size,
            image_size=image_size, variant=variant, seed=seed, dtype=dtype,
        )
        # pylint: disable-next=protected-access
        model, _ = training._build_and_compile(
            config, num_classes, _SCHEDULE_STEPS_PER_EPOCH, jit_compile
        )
    else:
        model = model_lib.AlexNet(
            num_classes=num_classes, image_size=image_size, seed=seed, variant=variant,
            dtype=precision.policy_name(dtype),
        )
        model.compile(optimizer=None, jit_compile=jit_compile)
    # Training compiles with one step per execution. Keras reads this
    # attribute when it makes its step functions, on the first call.
    model.steps_per_execution = steps_per_execution
    return model


def synthetic_batch(strategy, per_replica_batch_size, image_size, num_classes, seed=0):
    """Makes one batch of random images and labels on the device of each replica.

    Each replica gets its own draw. The pixels follow a zero-mean normal
    distribution cut at two standard deviations, with the spread of real
    mean-subtracted images, so conv1 gets inputs of both signs as in training.

    Args:
        strategy: the `tf.distribute.Strategy` that the model was built in.
        per_replica_batch_size: images per replica.
        image_size: side of the images, in pixels.
        num_classes: labels are drawn uniformly from [0, num_classes).
        seed: integer seed of the draw.

    Returns:
        `(images, labels)`: float32 images of shape
        `(per_replica_batch_size, image_size, image_size, 3)` and int32 labels
        of shape `(per_replica_batch_size,)`, as per-replica values of
        `strategy`, which are plain tensors on its device for one replica.
    """
    import tensorflow as tf

    @tf.function
    def make_batch():
        replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
        draw_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(replica_id, tf.int32)])
        images = tf.random.stateless_truncated_normal(
            [per_replica_batch_size, image_size, image_size, 3], seed=draw_seed,
            stddev=_SYNTHETIC_PIXEL_STDDEV,
        )
        labels = tf.random.stateless_uniform(
            [per_replica_batch_size], seed=draw_seed, minval=0, maxval=num_classes,
            dtype=tf.int32,
        )
        return images, labels

    return strategy.run(make_batch)


def measure_model(model, mode, batches, global_batch_size, warmup_steps, num_windows,
                  window_steps):
    """Times the training or inference steps of a compiled model, in images per second.

    Each call of Keras' step function runs `model.steps_per_execution` steps,
    and its result is read back to the host before the clock is read, so no
    timed step is still queued on the device when its window ends.

    NOTE: with several replicas, more than one step per execution and an
    iterator of a distributed dataset, Keras' step loop fails with
    "You must feed a value for placeholder tensor". `model.fit` fails the same
    way with Keras 3.15 and TensorFlow 2.21, on two logical CPU devices even
    for a one-layer model. Synthetic batches go through another loop of Keras,
    which works.

    Args:
        model: from `build_model`, in the strategy that made `batches`.
        mode: `TRAIN_MODE` or `INFER_MODE`.
        batches: an iterator of global batches `(images, labels)`: an iterator
            of a distributed dataset, or one that repeats the per-replica
            values of `synthetic_batch`.
        global_batch_size: images per step over all replicas.
        warmup_steps: steps run before timing starts.
        num_windows: timed windows, at least 1.
        window_steps: steps per window.

    Returns:
        The dict of `measure_images_per_second`, with `batch_size`,
        `warmup_batches` and `window_batches` counted in steps of
        `global_batch_size` images, plus `steps_per_execution` and
        `steps_run`: the optimizer's step count for training, or the images
        predicted divided by the batch size for inference, over warm-up and
        windows.

    Raises:
        ValueError: if `warmup_steps` or `window_steps` is not a multiple of
            the steps per execution.
    """
    steps_per_execution = model.steps_per_execution
    if warmup_steps % steps_per_execution or window_steps % steps_per_execution:
        raise ValueError(
            "Expected warm-up and window steps that are multiples of steps_per_execution="
            f"{steps_per_execution}, because Keras runs that many steps per call and only "
            f"whole calls can be timed. Received: warmup_steps={warmup_steps}, "
            f"window_steps={window_steps}."
        )

    predicted = []
    if mode == TRAIN_MODE:
        executions = _train_executions(model, batches)
    else:
        executions = _infer_executions(model, batches, predicted)
    result = measure_images_per_second(
        executions, global_batch_size * steps_per_execution,
        warmup_steps // steps_per_execution, num_windows,
        window_steps // steps_per_execution,
    )

    if mode == TRAIN_MODE:
        steps_run = int(model.optimizer.iterations.numpy())
    else:
        steps_run = sum(predicted) // global_batch_size
    result.update(
        batch_size=global_batch_size, warmup_batches=warmup_steps,
        window_batches=window_steps, steps_per_execution=steps_per_execution,
        steps_run=steps_run,
    )
    return result


def _train_executions(model, batches):
    """Calls Keras' training function for ever, yielding after each call."""
    model.make_train_function()
    while True:
        logs = model.train_function(batches)
        # The loss comes from metric variables that the compiled step reads
        # after it updates the weights, so reading it waits for the update.
        float(logs["loss"])
        yield


def _infer_executions(model, batches, predicted):
    """Calls Keras' predict function for ever, appending its output rows to `predicted`."""
    model.make_predict_function()
    while True:
        step_batches = [next(batches) for _ in range(model.steps_per_execution)]
        # Reading the logits back waits for them, as model.predict does.
        logits = model.predict_function(step_batches).numpy()
        predicted.append(len(logits))
        yield


def define_flags():
    """Defines the command-line flags of the benchmark.

    They are defined only when this module runs as a program, so that scripts
    that import `measure_images_per_second` can define flags of the same names.
    """
    from alexnet_tf import distribution
    from alexnet_tf import input_flags
    from alexnet_tf import model as model_lib
    from alexnet_tf import precision
    from alexnet_tf import preprocessing
    from alexnet_tf.data import image_folder

    flags.DEFINE_enum("mode", INPUT_MODE, list(_RUNNERS), "What to measure. input: the training "
                      "input pipeline alone, without a model. train: training steps, forward "
                      "and backward pass and weight update. infer: forward passes in inference "
                      "mode.")
    flags.DEFINE_enum("data", None, [SYNTHETIC_DATA, REAL_DATA], "What train and infer read. "
                      "synthetic: one random batch made on the device, reused every step. "
                      "real: the training input pipeline of --dataset and --data_dir. Default: "
                      "synthetic; --mode=input always reads real data.")
    input_flags.define_input_flags()
    flags.DEFINE_string("data_dir", None, "Where the data set is. folder: the root of the "
                        "tree. tfrecord: the folder of the shards. tfds: the TFDS data "
                        "folder; default ~/tensorflow_datasets.")
    flags.DEFINE_enum("split", image_folder.TRAIN_SPLIT,
                      [image_folder.TRAIN_SPLIT, image_folder.VALIDATION_SPLIT],
                      "Split to read. It goes through the training pipeline either way.")
    flags.DEFINE_enum("variant", "paper", model_lib.VARIANTS, "Network to measure; also sets "
                      "the default --image_size. See alexnet_tf.model.AlexNet.")
    flags.DEFINE_enum("dtype", precision.FLOAT32, precision.DTYPES, "Precision of the "
                      "computation. bfloat16 and float16 keep the weights in float32 (Keras' "
                      "mixed precision policies).")
    flags.DEFINE_integer("num_classes", 1000, "Outputs of the model. With --data=real it must "
                         "be at least the number of classes in the data.", lower_bound=1)
    flags.DEFINE_integer("global_batch_size", 128, "Images per step over all replicas.",
                         lower_bound=1)
    flags.DEFINE_integer("image_size", None, "Side of the model's input and of the random "
                         "crop, in pixels: at least 67, or 63 for torchvision. Default: the "
                         "variant's, 227, or 224 for torchvision.", lower_bound=1)
    flags.DEFINE_integer("resize_size", preprocessing.DEFAULT_RESIZE_SIZE, "Shorter side, in "
                         "pixels, of the resized image that crops are taken from.",
                         lower_bound=1)
    flags.DEFINE_float("pca_stddev", preprocessing.DEFAULT_PCA_STDDEV, "Standard deviation "
                       "of the PCA colour augmentation coefficients; 0 turns it off.",
                       lower_bound=0.0)
    flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA. Only with one "
                      "replica, as in training.")
    flags.DEFINE_integer("steps_per_execution", 1, "Steps per call of Keras' step function, "
                         "whose result is read back after each call. It must divide "
                         "--warmup_batches and --window_batches.", lower_bound=1)
    flags.DEFINE_enum("distribution_strategy", distribution.ONE_DEVICE, distribution.STRATEGIES,
                      "one_device: the first GPU, else the CPU. mirrored: every GPU, or every "
                      "--num_cpu_devices CPU device. See alexnet_tf.distribution.")
    flags.DEFINE_integer("num_gpus", None, "GPUs to use. Default: all that TensorFlow sees.",
                         lower_bound=0)
    flags.DEFINE_integer("num_cpu_devices", 1, "Split the CPU into this many devices, one "
                         "replica each, when there is no GPU.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the shuffle, the augmentation, the weights and "
                         "the synthetic batch.")
    flags.DEFINE_integer("warmup_batches", 20, "Batches, or steps in train and infer modes, "
                         "run before timing starts, so that start-up, compilation and "
                         "tf.data autotuning do not count.", lower_bound=0)
    flags.DEFINE_integer("num_windows", 5, "Timed windows; the median and spread are taken "
                         "over them.", lower_bound=1)
    flags.DEFINE_integer("window_batches", 10, "Batches, or steps in train and infer modes, "
                         "per timed window.", lower_bound=1)
    flags.DEFINE_string("output_json", None, "File to write the result and the settings to, "
                        "as JSON. An existing file is an error unless --overwrite.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output_json file.")


# Flags that only a model reads, and flags that only real data reads. Passing
# one where it has no effect is an error, so that no run looks like it
# measured something it did not.
_MODEL_FLAGS = ("dtype", "num_classes", "jit_compile", "steps_per_execution",
                "distribution_strategy", "num_gpus", "num_cpu_devices")
_REAL_DATA_FLAGS = ("dataset", "data_dir", "split", "resize_size", "pca_stddev",
                    "strict_decoding", "shuffle_buffer_size", "cache_dataset",
                    "deterministic_input", "data_threads", "autotune_ram_budget_mb")


def _data_kind():
    """Returns the data that the flags ask for, checking that every flag given applies."""
    if FLAGS.mode == INPUT_MODE:
        if FLAGS.data == SYNTHETIC_DATA:
            raise ValueError("--mode=input measures the input pipeline, which reads real "
                             "data. Drop --data=synthetic, or pass --mode=train or --mode=infer.")
        _check_not_given(_MODEL_FLAGS, "--mode=train and --mode=infer")
        return REAL_DATA
    data = FLAGS.data or SYNTHETIC_DATA
    if data == SYNTHETIC_DATA:
        _check_not_given(_REAL_DATA_FLAGS, "--data=real")
    return data


def _check_not_given(names, applies_to):
    """Raises ValueError naming the flags of `names` that the command line sets."""
    given = [f"--{name}" for name in names if FLAGS[name].present]
    if given:
        raise ValueError(f"Flags without effect here: {', '.join(given)}. They apply only to "
                         f"{applies_to}, not to --mode={FLAGS.mode} with "
                         f"--data={FLAGS.data or SYNTHETIC_DATA}. Drop them, or change --mode "
                         "or --data.")


def _image_size():
    from alexnet_tf import model as model_lib

    return FLAGS.image_size or model_lib.default_image_size(FLAGS.variant)


def _check_resize_size(image_size):
    if FLAGS.resize_size < image_size:
        raise ValueError(
            f"--resize_size={FLAGS.resize_size} is smaller than the image size {image_size}: "
            "crops of image_size pixels are taken from an image whose shorter side is "
            "resize_size. Pass a --resize_size of at least the image size."
        )


def _check_output_json():
    """Fails before any measuring if --output_json cannot be written."""
    path = FLAGS.output_json
    if path is None:
        return
    if os.path.exists(path) and not FLAGS.overwrite:
        raise FileExistsError(f"--output_json={path} exists. Pass --overwrite to replace it, "
                              "or another file name.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"The folder of --output_json={path} does not exist: "
                                f"{folder}. Create it, or pass another file name.")


def _open_training_source():
    from alexnet_tf import input_flags
    from alexnet_tf.data import sources

    sources.check_data_dir(FLAGS.dataset, FLAGS.data_dir)
    options = input_flags.input_options_from_flags()
    source = sources.open_source(FLAGS.dataset, FLAGS.data_dir, FLAGS.split)
    logging.info("Reading %s with %s.", source.description, options)
    return source, options


def run_input_mode():
    """Measures the training input pipeline that the flags describe.

    Returns:
        `(result, settings)`: the dict of `measure_images_per_second` and the
        settings that describe the run.
    """
    from alexnet_tf.data import input_pipeline

    _data_kind()
    image_size = _image_size()
    _check_resize_size(image_size)
    source, options = _open_training_source()

    dataset = input_pipeline.make_dataset(
        source, FLAGS.global_batch_size, training=True, image_size=image_size,
        resize_size=FLAGS.resize_size, pca_stddev=FLAGS.pca_stddev, seed=FLAGS.seed,
        options=options,
    )
    result = measure_images_per_second(
        dataset, FLAGS.global_batch_size, FLAGS.warmup_batches, FLAGS.num_windows,
        FLAGS.window_batches,
    )
    settings = {"mode": INPUT_MODE, "data": REAL_DATA, "image_size": image_size,
                **_data_settings(REAL_DATA)}
    return result, settings


def _data_settings(data):
    names = ["global_batch_size", "seed"]
    if data == REAL_DATA:
        names += ["dataset", "data_dir", "split", "resize_size", "pca_stddev"]
    return {name: FLAGS[name].value for name in names}


def run_model_mode():
    """Measures the training or inference steps that the flags describe.

    Returns:
        `(result, settings)`: the dict of `measure_model` and the settings
        that describe the run.
    """
    from alexnet_tf import distribution
    from alexnet_tf import model as model_lib

    data = _data_kind()
    image_size = _image_size()
    model_lib.check_image_size(image_size, FLAGS.variant)
    if data == REAL_DATA:
        _check_resize_size(image_size)
    strategy = distribution.create_strategy(
        FLAGS.distribution_strategy, num_gpus=FLAGS.num_gpus,
        num_cpu_devices=FLAGS.num_cpu_devices,
    )
    num_replicas = strategy.num_replicas_in_sync
    per_replica_batch_size = distribution.per_replica_batch_size(
        FLAGS.global_batch_size, num_replicas
    )
    if data == REAL_DATA and num_replicas > 1 and FLAGS.steps_per_execution > 1:
        raise ValueError(
            f"--steps_per_execution={FLAGS.steps_per_execution} with --data=real and "
            f"{num_replicas} replicas fails inside Keras 3.15 (\"You must feed a value for "
            "placeholder tensor\"). Drop --steps_per_execution, or pass --data=synthetic."
        )
    if FLAGS.jit_compile and num_replicas > 1:
        raise ValueError(f"--jit_compile needs one replica, as in training; the strategy has "
                         f"{num_replicas}. Drop --jit_compile, or pass "
                         "--distribution_strategy=one_device.")

    with strategy.scope():
        model = build_model(
            FLAGS.mode, FLAGS.variant, FLAGS.num_classes, image_size, FLAGS.global_batch_size,
            FLAGS.jit_compile, FLAGS.steps_per_execution, FLAGS.seed, FLAGS.dtype,
        )
    if data == SYNTHETIC_DATA:
        batches = itertools.repeat(synthetic_batch(
            strategy, per_replica_batch_size, image_size, FLAGS.num_classes, FLAGS.seed
        ))
    else:
        batches = iter(_distributed_training_data(strategy, image_size))

    result = measure_model(
        model, FLAGS.mode, batches, FLAGS.global_batch_size, FLAGS.warmup_batches,
        FLAGS.num_windows, FLAGS.window_batches,
    )
    settings = {
        "mode": FLAGS.mode, "data": data, "variant": FLAGS.variant, "dtype": FLAGS.dtype,
        "dtype_policy": model.dtype_policy.name, "num_classes": FLAGS.num_classes,
        "image_size": image_size, "jit_compile": FLAGS.jit_compile,
        "distribution_strategy": type(strategy).__name__.lstrip("_"),
        "num_replicas": num_replicas,
        **_data_settings(data),
    }
    return result, settings


def _distributed_training_data(strategy, image_size):
    """Returns the training pipeline of the flags, split over the strategy's replicas."""
    from alexnet_tf.data import input_pipeline

    source, options = _open_training_source()
    if source.num_classes > FLAGS.num_classes:
        raise ValueError(
            f"{source.description} has {source.num_classes} classes, more than "
            f"--num_classes={FLAGS.num_classes} outputs. Pass --num_classes="
            f"{source.num_classes} or more."
        )
    return input_pipeline.distribute_dataset(
        strategy, source, FLAGS.global_batch_size, training=True, image_size=image_size,
        resize_size=FLAGS.resize_size, pca_stddev=FLAGS.pca_stddev, seed=FLAGS.seed,
        options=options,
    )


# The function that measures each --mode.
_RUNNERS = {INPUT_MODE: run_input_mode, TRAIN_MODE: run_model_mode, INFER_MODE: run_model_mode}


def _summary_line(result, settings):
    """Returns the line that a run prints: what was measured, then its rates."""
    if settings["mode"] == INPUT_MODE:
        what = f"input {settings['dataset']} {settings['data_dir']}"
    else:
        data = settings["data"]
        if data == REAL_DATA:
            data = f"real {settings['dataset']} {settings['data_dir']}"
        what = (f"{settings['mode']} {data} {settings['variant']} {settings['dtype']} "
                f"{settings['image_size']}px, jit_compile={settings['jit_compile']}, "
                f"steps_per_execution={result['steps_per_execution']}, "
                f"{settings['num_replicas']} replica(s) of {settings['distribution_strategy']}")
    return f"{what}: {format_rates(result)}"


def _write_json(result, settings):
    import keras
    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    mode = "w" if FLAGS.overwrite else "x"
    with open(FLAGS.output_json, mode) as file:
        json.dump({"settings": settings, "result": result, "versions": versions}, file,
                  indent=2)
    logging.info("Wrote %s.", FLAGS.output_json)


def _run():
    _check_output_json()
    result, settings = _RUNNERS[FLAGS.mode]()
    if FLAGS.output_json:
        _write_json(result, settings)
    return result, settings


def main(argv):
    from alexnet_tf import input_flags

    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    result, settings = input_flags.run_reporting_errors(_run)
    print(_summary_line(result, settings))


if __name__ == "__main__":
    define_flags()
    app.run(main)
