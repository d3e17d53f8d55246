r"""Compares alexnet_tf's training input pipeline with torchvision's on one JPEG tree.

    bench/.venv/bin/python bench/input_vs_torchvision.py --data_dir=/tmp/jpeg_tree \
        [--tfrecord_dir=/tmp/jpeg_tree_tfrecords] [--profile]

measures, one after the other and each in its own process so that none
competes with another for the cores, the training images per second of:

- decode_tf: `tf.io.decode_jpeg` of every file at full size in a tf.data map
  with AUTOTUNE parallelism, nothing else: what the machine's JPEG decoder
  allows, the reference for the decode ratio.
- decode_pil: Pillow's decode of every file at full size in one process per
  core, a second reference.
- torchvision: `ImageFolder` and `DataLoader` (one worker per core, pin_memory
  off) with Resize(256), RandomCrop(227), RandomHorizontalFlip, ToTensor, the
  PCA lighting of alexnet_tf and Normalize.
- alexnet_tf_folder: `input_pipeline.make_dataset` on the folder source.
- alexnet_tf_tfrecord: the same on TFRecord shards of the tree, with
  --tfrecord_dir (written by `alexnet_tf.data.build_tfrecords` if missing).

--profile adds two lines that split alexnet_tf's time. tf_preprocess runs
`preprocessing.preprocess_for_train` in a bare file-list pipeline, without the
source, the bad-image check and the shuffle. tf_decode_crop decodes only the
window that the random crop keeps, with `tf.image.decode_and_crop_jpeg`, and
does nothing else.

It prints a table of medians and spreads over the timed windows, and the
ratios alexnet_tf / torchvision and alexnet_tf / decode_tf. Needs torch and
torchvision: see bench/README.md for the venv.
"""

import ast
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags of this script.

    They are defined only when the script runs as a program, so that other
    bench scripts can import its torchvision pipeline and define flags of the
    same names.
    """
    flags.DEFINE_string("data_dir", None, "Root of the JPEG tree, with train/<class>/<image>.")
    flags.DEFINE_string("tfrecord_dir", None, "Folder of TFRecord shards of the same tree; "
                        "written with alexnet_tf.data.build_tfrecords if it does not exist. "
                        "None skips the TFRecord measurement.")
    flags.DEFINE_list("measurements", None, "Measurements to run, comma-separated. Default: all "
                      "of decode_tf, decode_pil, torchvision, alexnet_tf_folder and, with "
                      "--tfrecord_dir, alexnet_tf_tfrecord.")
    flags.DEFINE_bool("profile", False, "Also run tf_preprocess and tf_decode_crop, which split "
                      "the time of alexnet_tf's pipeline into its parts.")
    flags.DEFINE_integer("batch_size", 128, "Images per batch.", lower_bound=1)
    flags.DEFINE_integer("image_size", 227, "Side of the random crop, in pixels.", lower_bound=1)
    flags.DEFINE_integer("resize_size", 256, "Shorter side, in pixels, that crops are taken from.",
                         lower_bound=1)
    flags.DEFINE_float("pca_stddev", 0.1, "Standard deviation of the PCA lighting coefficients.",
                       lower_bound=0.0)
    flags.DEFINE_integer("warmup_batches", 20, "Batches drawn before timing starts.", lower_bound=0)
    flags.DEFINE_integer("num_windows", 5, "Timed windows per measurement.", lower_bound=1)
    flags.DEFINE_integer("window_batches", 10, "Batches per timed window.", lower_bound=1)
    flags.DEFINE_integer("num_workers", None, "Processes of the torchvision DataLoader and of "
                         "decode_pil. Default: the number of cores.", lower_bound=1)
    flags.DEFINE_float("max_other_load", None, "Measure again, up to --max_tries times in all, "
                       "when other processes kept more than this many cores busy meanwhile; the "
                       "quietest try is kept. None measures once.", lower_bound=0.0)
    flags.DEFINE_integer("max_tries", 3, "Tries per measurement with --max_other_load.",
                         lower_bound=1)
    flags.DEFINE_string("output_json", None, "File to write all results to, as JSON.")
    # Set by the parent process for each child; not for users.
    flags.DEFINE_string("measure", None, "Run this one measurement in this process.")
    flags.DEFINE_string("result_file", None, "Where --measure writes its result as JSON.")
    flags.mark_flag_as_required("data_dir")


_SEED = 0
_NUM_TRAIN_SHARDS = 8
_RESULT_LABELS = {
    "decode_tf": "full-size decode, tf.io.decode_jpeg in tf.data",
    "decode_pil": "full-size decode, Pillow in worker processes",
    "torchvision": "torchvision ImageFolder + DataLoader",
    "alexnet_tf_folder": "alexnet_tf make_dataset, folder",
    "alexnet_tf_tfrecord": "alexnet_tf make_dataset, TFRecord",
    "tf_preprocess": "profile: preprocess_for_train on a file list",
    "tf_decode_crop": "profile: decode_and_crop_jpeg of the crop window",
}


def _num_workers():
    return FLAGS.num_workers or os.cpu_count()


def _measure_kwargs():
    return {
        "batch_size": FLAGS.batch_size,
        "warmup_batches": FLAGS.warmup_batches,
        "num_windows": FLAGS.num_windows,
        "window_batches": FLAGS.window_batches,
    }


def _train_paths():
    """Returns the sorted paths of the JPEGs under DATA_DIR/train/<class>/."""
    train_dir = os.path.join(FLAGS.data_dir, "train")
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(
            f"{train_dir} not found. Write a tree with bench/make_jpeg_tree.py and pass "
            "its folder as --data_dir."
        )
    paths = sorted(
        os.path.join(class_dir, name)
        for class_dir in (entry.path for entry in os.scandir(train_dir) if entry.is_dir())
        for name in os.listdir(class_dir)
        if os.path.splitext(name)[1].lower() in (".jpg", ".jpeg")
    )
    if not paths:
        raise FileNotFoundError(
            f"No JPEG files in {train_dir}/<class>/. Write a tree with "
            "bench/make_jpeg_tree.py and pass its folder as --data_dir."
        )
    return paths


# Measurements. Each runs in a child process and returns the dict of
# `benchmark.measure_images_per_second`. Heavy imports stay inside them, so
# that a TensorFlow child never loads torch and the other way round.


def measure_decode_tf():
    import tensorflow as tf
    from alexnet_tf import benchmark

    def decode(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        # The shape needs the decoded image, so the decode cannot be skipped,
        # and batching shapes is nearly free next to batching pixels.
        return tf.shape(image)

    dataset = tf.data.Dataset.from_tensor_slices(_train_paths()).repeat()
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    dataset = dataset.batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE)
    return benchmark.measure_images_per_second(dataset, **_measure_kwargs())


def _decode_pil(path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.size


def _pil_batches(paths, batch_size, num_workers):
    """Yields one list of decoded sizes per `batch_size` files, decoded by a pool."""
    import itertools
    import multiprocessing

    with multiprocessing.Pool(num_workers) as pool:
        sizes = pool.imap_unordered(_decode_pil, itertools.cycle(paths), chunksize=16)
        while True:
            yield list(itertools.islice(sizes, batch_size))


def measure_decode_pil():
    from alexnet_tf import benchmark

    batches = _pil_batches(_train_paths(), FLAGS.batch_size, _num_workers())
    return benchmark.measure_images_per_second(
        batches, cpu_clock=process_tree_cpu_seconds, **_measure_kwargs()
    )


def process_tree_cpu_seconds():
    """Returns the CPU seconds used by this process and its live descendants.

    Worker processes of a `multiprocessing.Pool` or a `DataLoader` do the
    decoding, so their time has to count. Reads /proc, so Linux only.
    """
    parents = {}
    cpu_seconds = {}
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:
            continue  # The process ended meanwhile.
        # The command name in brackets may contain spaces, so fields are
        # counted after it. They start with the state and the parent id, and
        # utime and stime are the 12th and 13th after the state.
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        cpu_seconds[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks_per_second

    tree = {os.getpid()}
    added = True
    while added:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        added = bool(children)
    return sum(cpu_seconds.get(pid, 0.0) for pid in tree)


def preprocessing_constants():
    """Returns the constants of `alexnet_tf.preprocessing` by name, without TensorFlow.

    The module imports TensorFlow, which the torchvision process and its forked
    workers should not load, so its assignments of literals are read from the
    source instead.
    """
    spec = importlib.util.find_spec("alexnet_tf.preprocessing")
    with open(spec.origin) as file:
        tree = ast.parse(file.read())

    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                try:
                    constants[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return constants


class PcaLighting:
    """Adds alexnet_tf's PCA colour noise to a CHW float tensor on a 0-1 scale.

    Draws alpha of shape (3,) from N(0, stddev) per image and adds
    `eigenvectors @ (alpha * eigenvalues)` to every pixel, with the eigenvalues
    and eigenvectors of `alexnet_tf.preprocessing`, computed on 0-1 pixels.
    """

    def __init__(self, stddev):
        import torch

        constants = preprocessing_constants()
        self.stddev = stddev
        self.eigenvalues = torch.tensor(constants["IMAGENET_PCA_EIGENVALUES"])
        self.eigenvectors = torch.tensor(constants["IMAGENET_PCA_EIGENVECTORS"])

    def __call__(self, image):
        import torch

        if self.stddev == 0:
            return image
        alpha = torch.randn(3) * self.stddev
        rgb = self.eigenvectors @ (alpha * self.eigenvalues)
        return image + rgb.view(3, 1, 1)


def torchvision_transform(image_size, resize_size, pca_stddev):
    """Returns torchvision transforms equivalent to alexnet_tf's training preprocessing.

    The steps are a resize to a shorter side of `resize_size`, a random
    `image_size` crop, a random horizontal flip, alexnet_tf's PCA lighting and
    its mean subtraction on the 0-255 scale. The result is a CHW float tensor.
    """
    from torchvision import transforms

    # Mean subtraction on the 0-255 scale, as alexnet_tf does: (x - m / 255) * 255.
    mean = [channel / 255 for channel in preprocessing_constants()["IMAGENET_RGB_MEAN"]]
    return transforms.Compose([
        transforms.Resize(resize_size),
        transforms.RandomCrop(image_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        PcaLighting(pca_stddev),
        transforms.Normalize(mean, [1 / 255] * 3),
    ])


def torchvision_loader(train_dir, batch_size, num_batches, num_workers, transform, seed=_SEED):
    """Returns a `DataLoader` of `num_batches` random batches of `ImageFolder(train_dir)`.

    Args:
        train_dir: folder of one subfolder of images per class.
        batch_size: images per batch; every batch is full.
        num_batches: batches the loader yields before it ends.
        num_workers: loader processes; pin_memory is off.
        transform: applied to each image, such as `torchvision_transform(...)`.
        seed: seed of the sampler.
    """
    import torch
    from torch.utils import data
    from torchvision import datasets

    dataset = datasets.ImageFolder(train_dir, transform=transform)
    # One sampler spans all epochs, so the loader never drains and refills its
    # workers' queues at an epoch boundary. tf.data's repeat() does not pause
    # there either.
    sampler = data.RandomSampler(
        dataset, num_samples=num_batches * batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    return data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=False, drop_last=True,
    )


def measure_torchvision():
    from alexnet_tf import benchmark

    transform = torchvision_transform(FLAGS.image_size, FLAGS.resize_size, FLAGS.pca_stddev)
    needed = FLAGS.warmup_batches + FLAGS.num_windows * FLAGS.window_batches
    loader = torchvision_loader(
        os.path.join(FLAGS.data_dir, "train"), FLAGS.batch_size, needed + 1, _num_workers(),
        transform,
    )
    return benchmark.measure_images_per_second(
        loader, cpu_clock=process_tree_cpu_seconds, **_measure_kwargs()
    )


def _alexnet_tf_rate(dataset_name, data_dir):
    from alexnet_tf import benchmark
    from alexnet_tf.data import input_pipeline
    from alexnet_tf.data import sources

    source = sources.open_source(dataset_name, data_dir, "train")
    dataset = input_pipeline.make_dataset(
        source, FLAGS.batch_size, training=True, image_size=FLAGS.image_size,
        resize_size=FLAGS.resize_size, pca_stddev=FLAGS.pca_stddev, seed=_SEED,
    )
    return benchmark.measure_images_per_second(dataset, **_measure_kwargs())


def measure_alexnet_tf_folder():
    return _alexnet_tf_rate("folder", FLAGS.data_dir)


def measure_alexnet_tf_tfrecord():
    return _alexnet_tf_rate("tfrecord", FLAGS.tfrecord_dir)


def measure_tf_preprocess():
    import tensorflow as tf
    from alexnet_tf import benchmark
    from alexnet_tf import preprocessing

    def preprocess(path, seed):
        return preprocessing.preprocess_for_train(
            tf.io.read_file(path), FLAGS.image_size, FLAGS.resize_size, FLAGS.pca_stddev, seed
        )

    paths = tf.data.Dataset.from_tensor_slices(_train_paths()).repeat()
    seeds = tf.data.Dataset.random(seed=_SEED).batch(2)
    dataset = tf.data.Dataset.zip(paths, seeds)
    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    dataset = dataset.batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE)
    return benchmark.measure_images_per_second(dataset, **_measure_kwargs())


def measure_tf_decode_crop():
    import tensorflow as tf
    from alexnet_tf import benchmark

    def decode_crop(path):
        image_bytes = tf.io.read_file(path)
        shape = tf.image.extract_jpeg_shape(image_bytes)
        side = tf.cast(
            tf.round(tf.cast(tf.reduce_min(shape[:2]), tf.float32)
                     * (FLAGS.image_size / FLAGS.resize_size)), tf.int32)
        offsets = tf.cast(tf.random.uniform([2]) * tf.cast(shape[:2] - side, tf.float32), tf.int32)
        window = tf.stack([offsets[0], offsets[1], side, side])
        return tf.shape(tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3))

    dataset = tf.data.Dataset.from_tensor_slices(_train_paths()).repeat()
    dataset = dataset.map(decode_crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    dataset = dataset.batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE)
    return benchmark.measure_images_per_second(dataset, **_measure_kwargs())


_MEASUREMENTS = {
    "decode_tf": measure_decode_tf,
    "decode_pil": measure_decode_pil,
    "torchvision": measure_torchvision,
    "alexnet_tf_folder": measure_alexnet_tf_folder,
    "alexnet_tf_tfrecord": measure_alexnet_tf_tfrecord,
    "tf_preprocess": measure_tf_preprocess,
    "tf_decode_crop": measure_tf_decode_crop,
}


def _selected_measurements():
    if FLAGS.measurements:
        names = list(FLAGS.measurements)
        unknown = sorted(set(names) - set(_MEASUREMENTS))
        if unknown:
            raise app.UsageError(
                f"Unknown --measurements {unknown}; choose from {sorted(_MEASUREMENTS)}."
            )
    else:
        names = ["decode_tf", "decode_pil", "torchvision", "alexnet_tf_folder"]
        if FLAGS.tfrecord_dir:
            names.append("alexnet_tf_tfrecord")
    if FLAGS.profile:
        names += [name for name in ("tf_preprocess", "tf_decode_crop") if name not in names]
    if "alexnet_tf_tfrecord" in names and not FLAGS.tfrecord_dir:
        raise app.UsageError("alexnet_tf_tfrecord needs --tfrecord_dir.")
    return names


def _build_tfrecords():
    """Writes TFRecord shards of the tree into --tfrecord_dir unless it exists."""
    if os.path.isdir(FLAGS.tfrecord_dir):
        logging.info("Using the TFRecord shards in %s.", FLAGS.tfrecord_dir)
        return
    logging.info("Writing TFRecord shards of %s to %s.", FLAGS.data_dir, FLAGS.tfrecord_dir)
    # Several shards, so that the file-level shuffle and the interleaving of
    # the TFRecord source run as they do on ImageNet's usual 1024 shards.
    completed = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.data.build_tfrecords",
         f"--data_dir={FLAGS.data_dir}", f"--output_dir={FLAGS.tfrecord_dir}",
         f"--num_train_shards={_NUM_TRAIN_SHARDS}", "--num_validation_shards=1"],
    )
    if completed.returncode:
        raise SystemExit(
            f"error: writing TFRecord shards to {FLAGS.tfrecord_dir} failed with exit code "
            f"{completed.returncode}; its log is above."
        )


def _read_files_once(paths):
    """Reads every file so that each measurement finds them in the page cache."""
    for path in paths:
        with open(path, "rb") as file:
            file.read()


def _run_child(name):
    """Runs one measurement in a new process and returns its result dict."""
    with tempfile.TemporaryDirectory() as temp_dir:
        result_file = os.path.join(temp_dir, "result.json")
        command = [sys.executable, os.path.abspath(__file__), f"--measure={name}",
                   f"--result_file={result_file}"]
        command += [
            f"--{flag}={getattr(FLAGS, flag)}"
            for flag in ("data_dir", "batch_size", "image_size", "resize_size", "pca_stddev",
                         "warmup_batches", "num_windows", "window_batches")
        ]
        command.append(f"--num_workers={_num_workers()}")
        if FLAGS.tfrecord_dir:
            command.append(f"--tfrecord_dir={FLAGS.tfrecord_dir}")

        logging.info("Measuring %s.", name)
        busy_before = _machine_busy_seconds()
        children_before = _children_cpu_seconds()
        start = time.monotonic()
        completed = subprocess.run(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if completed.returncode:
            raise SystemExit(
                f"error: measuring {name} failed with exit code {completed.returncode}; "
                "its log is above."
            )
        wall_seconds = time.monotonic() - start
        busy_seconds = _machine_busy_seconds() - busy_before
        child_seconds = _children_cpu_seconds() - children_before

        with open(result_file) as file:
            result = json.load(file)
    # Cores kept busy by everything but this measurement, averaged over the
    # child's life: other work on the machine would lower every rate.
    result["other_load"] = max(0.0, busy_seconds - child_seconds) / wall_seconds
    return result


def _measure_quietly(name):
    """Runs one measurement until other processes stay below --max_other_load."""
    quietest = None
    for attempt in range(1, FLAGS.max_tries + 1):
        result = _run_child(name)
        result["tries"] = attempt
        if quietest is None or result["other_load"] < quietest["other_load"]:
            quietest = result
        if FLAGS.max_other_load is None or result["other_load"] <= FLAGS.max_other_load:
            break
        logging.warning(
            "Other processes kept %.2f cores busy while measuring %s, more than "
            "--max_other_load=%.2f (try %d of %d).",
            result["other_load"], name, FLAGS.max_other_load, attempt, FLAGS.max_tries,
        )
    return quietest


def _machine_busy_seconds():
    """Returns the CPU seconds all cores spent on anything but idling since boot."""
    with open("/proc/stat") as file:
        ticks = [int(field) for field in file.readline().split()[1:9]]
    # user, nice, system, idle, iowait, irq, softirq, steal.
    idle_ticks = ticks[3] + ticks[4]
    return (sum(ticks) - idle_ticks) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds():
    """Returns the CPU seconds of the finished child processes and their own children."""
    times = os.times()
    return times.children_user + times.children_system


def _versions():
    """Returns the installed versions of the libraries the measurements use."""
    return {
        package: importlib.metadata.version(package)
        for package in ("tensorflow", "torch", "torchvision", "pillow")
    }


def _print_report(results, versions):
    print(f"\nTraining images per second, {os.cpu_count()} cores, batch {FLAGS.batch_size}, "
          f"{FLAGS.num_windows} windows of {FLAGS.window_batches} batches after "
          f"{FLAGS.warmup_batches} warm-up batches; {versions}")
    print("'CPU ms' is CPU time per image over the windows, workers included; 'cores' the "
          "cores it kept busy; 'others' the cores that other processes kept busy meanwhile.")
    print(f"{'measurement':<50} {'median':>7} {'min':>7} {'max':>7} {'IQR':>13} "
          f"{'CPU ms':>6} {'cores':>5} {'others':>6}")
    for name, result in results.items():
        iqr = f"{result['q1']:.0f}-{result['q3']:.0f}"
        print(f"{_RESULT_LABELS[name]:<50} {result['median']:7.1f} {result['min']:7.1f} "
              f"{result['max']:7.1f} {iqr:>13} {result['cpu_ms_per_image']:6.2f} "
              f"{result['cores_used']:5.2f} {result['other_load']:6.2f}")

    # The ratio of CPU times per image estimates the ratio of rates on an idle
    # machine, for pipelines that keep every core busy.
    for alexnet_name in ("alexnet_tf_folder", "alexnet_tf_tfrecord"):
        if alexnet_name not in results:
            continue
        alexnet = results[alexnet_name]
        for reference_name, target in (("torchvision", 2.5), ("decode_tf", 0.6)):
            if reference_name not in results:
                continue
            reference = results[reference_name]
            ratio = alexnet["median"] / reference["median"]
            cpu_ratio = reference["cpu_ms_per_image"] / alexnet["cpu_ms_per_image"]
            verdict = "met" if ratio >= target else "MISSED"
            print(f"{alexnet_name} / {reference_name}: {ratio:.2f} (target >= {target}: "
                  f"{verdict}); by CPU time per image: {cpu_ratio:.2f}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    if FLAGS.measure:
        result = _MEASUREMENTS[FLAGS.measure]()
        with open(FLAGS.result_file, "w") as file:
            json.dump(result, file)
        return

    names = _selected_measurements()
    try:
        paths = _train_paths()
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    if "alexnet_tf_tfrecord" in names:
        _build_tfrecords()
    _read_files_once(paths)

    results = {name: _measure_quietly(name) for name in names}
    versions = _versions()
    _print_report(results, versions)
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as file:
            json.dump({"versions": versions, "cores": os.cpu_count(), "results": results},
                      file, indent=2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
