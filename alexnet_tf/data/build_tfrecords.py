r"""Converts an ImageNet-style folder tree into TFRecord shards.

    python -m alexnet_tf.data.build_tfrecords --data_dir=DIR --output_dir=DIR \
        [--num_train_shards=1024] [--num_validation_shards=128] [--num_workers=N]

reads DIR/train/<class>/<image> and DIR/validation/<class>/<image> (or val/)
and writes `train-NNNNN-of-NNNNN` and `validation-NNNNN-of-NNNNN` shards in the
format of `tfrecords`, with labels from 0, and `dataset_info.json`.

Every image is decoded with TensorFlow first. RGB JPEGs are stored byte for
byte, so the folder and the shards give the same pixels. PNG, GIF and BMP
files and grayscale and CMYK JPEGs are re-encoded as RGB JPEGs of quality 95
without chroma subsampling.
Files that do not decode (empty, truncated, not an image) are skipped. The
report at the end, also stored in `dataset_info.json`, counts and names them.
Each example's `image/filename` is its file's path relative to DIR, for
example `train/n01440764/n01440764_10026.JPEG`.

Files are shuffled with a fixed seed, so that classes mix across shards, and
split into shards the same way whatever the number of workers: the same input
gives byte-identical shards.
"""

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import random
import time

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from alexnet_tf.data import image_folder
from alexnet_tf.data import tfrecords

JPEG_QUALITY = 95
# Files named in the report per reason; the rest are counted.
MAX_NAMED_FILES = 5

_SIGNATURES = (
    ("jpeg", b"\xff\xd8\xff"),
    ("png", b"\x89PNG\r\n\x1a\n"),
    ("gif", b"GIF8"),
    ("bmp", b"BM"),
)
# Start-of-frame markers, which give the number of colour components. C4
# (Huffman tables), C8 (reserved) and CC (arithmetic coding) are not frames.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_START_OF_SCAN = 0xDA
_PROGRESS_INTERVAL_SECONDS = 30

SKIP_EMPTY = "empty file"
SKIP_NOT_AN_IMAGE = "not a JPEG, PNG, GIF or BMP file"
SKIP_UNDECODABLE = "could not be decoded (truncated or corrupt)"
SKIP_UNREADABLE = "could not be read"
CONVERT_GRAYSCALE = "grayscale jpeg"
CONVERT_CMYK = "cmyk jpeg"


class SkippedImage(Exception):
    """Raised for an image file that cannot be stored; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class _ShardTask:
    """The images of one shard and where to write it."""

    split: str
    index: int
    num_shards: int
    paths: tuple
    labels: tuple
    data_dir: str
    class_names: tuple
    output_dir: str

    @property
    def name(self):
        return tfrecords.shard_name(self.split, self.index, self.num_shards)


def _image_format(data):
    for name, signature in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def _jpeg_num_components(data):
    """Returns the number of colour components in a JPEG's frame header, or None.

    1 is grayscale, 3 is YCbCr or RGB, 4 is CMYK or YCCK. Only the markers
    before the first scan are read.
    """
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # Fill byte before a marker.
            position += 1
            continue
        if marker in _JPEG_FRAME_MARKERS:
            # Length (2 bytes), precision (1), height (2), width (2), components (1).
            return data[position + 9] if position + 9 < len(data) else None
        if marker == _JPEG_START_OF_SCAN:
            return None
        segment_length = int.from_bytes(data[position + 2 : position + 4], "big")
        position += 2 + segment_length
    return None


def _decode(data, channels):
    try:
        return tf.io.decode_image(data, channels=channels, dtype=tf.uint8,
                                  expand_animations=False)
    except tf.errors.InvalidArgumentError:
        # TensorFlow rejects a JPEG that ends before its end-of-image marker
        # ("Premature end of JPEG data"), checked with 2.21, and truncated
        # PNG and GIF files.
        raise SkippedImage(SKIP_UNDECODABLE) from None


def prepare_image(data):
    """Checks one image file and turns it into an RGB JPEG.

    Args:
        data: the bytes of the image file.

    Returns:
        `(jpeg_bytes, height, width, conversion)`: the JPEG to store, its size
        in pixels, and None if `data` is stored unchanged, else the reason it
        was re-encoded ("png", "gif", "bmp", "grayscale jpeg", "cmyk jpeg").

    Raises:
        SkippedImage: if the file is empty, not an image or does not decode;
            the message is the reason.
    """
    if not data:
        raise SkippedImage(SKIP_EMPTY)
    image_format = _image_format(data)
    if image_format is None:
        raise SkippedImage(SKIP_NOT_AN_IMAGE)

    if image_format == "jpeg":
        image = _decode(data, channels=0)
        num_components = _jpeg_num_components(data) or int(image.shape[-1])
        if num_components == 3:
            return data, int(image.shape[0]), int(image.shape[1]), None
        conversion = {1: CONVERT_GRAYSCALE, 4: CONVERT_CMYK}.get(
            num_components, f"jpeg with {num_components} components")
    else:
        conversion = image_format

    image = _decode(data, channels=3)
    # No chroma subsampling: in a trial it doubled the mean pixel error of
    # re-encoding a CMYK photo crop (4.3 against 2.0 levels of 255).
    jpeg = tf.io.encode_jpeg(image, quality=JPEG_QUALITY, chroma_downsampling=False).numpy()
    return jpeg, int(image.shape[0]), int(image.shape[1]), conversion


class _FileCounter:
    """Counts files by reason and keeps the first few names in sorted order."""

    def __init__(self):
        self.counts = collections.Counter()
        self.names = collections.defaultdict(list)

    def add(self, reason, names, count=1):
        self.counts[reason] += count
        self.names[reason] = sorted(self.names[reason] + list(names))[:MAX_NAMED_FILES]

    def to_dict(self):
        return {reason: {"count": self.counts[reason], "first_files": self.names[reason]}
                for reason in sorted(self.counts)}


def _write_shard(task):
    """Writes one shard under a temporary name, then renames it.

    A run killed halfway leaves `NAME.partial`, never a half shard under its
    final name.

    Returns:
        A dict with the shard's `split`, `index`, `bytes`, `written` count and
        the `converted` and `skipped` files as `_FileCounter.to_dict` gives.
    """
    converted = _FileCounter()
    skipped = _FileCounter()
    written = 0
    final_path = os.path.join(task.output_dir, task.name)
    partial_path = final_path + ".partial"

    with tf.io.TFRecordWriter(partial_path) as writer:
        for path, label in zip(task.paths, task.labels):
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except OSError as error:
                logging.warning("Skipping %s, which could not be read: %s", path, error)
                skipped.add(SKIP_UNREADABLE, [path])
                continue
            try:
                jpeg, height, width, conversion = prepare_image(data)
            except SkippedImage as skip:
                skipped.add(str(skip), [path])
                continue
            if conversion:
                converted.add(conversion, [path])

            file_name = os.path.relpath(path, task.data_dir)
            writer.write(tfrecords.serialize_example(
                jpeg, label, task.class_names[label], file_name, height, width))
            written += 1

    tf.io.gfile.rename(partial_path, final_path)
    return {
        "split": task.split,
        "index": task.index,
        "bytes": tf.io.gfile.stat(final_path).length,
        "written": written,
        "converted": converted.to_dict(),
        "skipped": skipped.to_dict(),
    }


def _init_worker():
    # Each worker decodes one image at a time; more threads per worker would
    # only compete with the other workers.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _plan_shards(image_list, split, num_shards, seed, data_dir, output_dir):
    """Shuffles the files of a split with `seed` and cuts them into shards.

    Shard `i` of `n` gets the shuffled files `[i * N // n, (i + 1) * N // n)`.
    `random.Random(seed)` gives the same shuffle on every platform for the
    same Python version.

    Returns:
        A list of `_ShardTask`, one per shard.
    """
    order = list(range(len(image_list)))
    random.Random(seed).shuffle(order)
    tasks = []
    for index in range(num_shards):
        chosen = order[index * len(order) // num_shards : (index + 1) * len(order) // num_shards]
        tasks.append(_ShardTask(
            split=split,
            index=index,
            num_shards=num_shards,
            paths=tuple(image_list.paths[i] for i in chosen),
            labels=tuple(image_list.labels[i] for i in chosen),
            data_dir=data_dir,
            class_names=image_list.class_names,
            output_dir=output_dir,
        ))
    return tasks


def _check_output_dir(output_dir):
    """Rejects an output folder that already contains shards or a conversion's files."""
    if not tf.io.gfile.exists(output_dir):
        return
    if not tf.io.gfile.isdir(output_dir):
        raise FileExistsError(f"Output path {output_dir!r} is a file. Choose a folder "
                              "for --output_dir.")
    ours = [name for name in tf.io.gfile.listdir(output_dir)
            if name.startswith(tfrecords.INFO_FILE)
            or any(name.startswith(f"{split}-") for split in tfrecords.SPLITS)]
    if ours:
        raise FileExistsError(
            f"Output folder {output_dir!r} already contains TFRecord shards or "
            f"{tfrecords.INFO_FILE} ({', '.join(sorted(ours)[:3])}). Choose another "
            "--output_dir or delete that folder first."
        )


def _clamp_num_shards(split, num_shards, num_images):
    if num_shards < 1:
        raise ValueError(f"The number of {split} shards must be at least 1. "
                         f"Received: {num_shards}")
    if num_shards > num_images:
        logging.warning("%d %s shards requested but only %d images: writing %d shards.",
                        num_shards, split, num_images, num_images)
        return num_images
    return num_shards


class _Progress:
    """Logs shards and images written, at most every `_PROGRESS_INTERVAL_SECONDS`."""

    def __init__(self, num_shards, num_images):
        self.num_shards = num_shards
        self.num_images = num_images
        self.done_shards = 0
        self.done_images = 0
        self.start = time.monotonic()
        self.last_log = self.start

    def update(self, num_images):
        self.done_shards += 1
        self.done_images += num_images
        now = time.monotonic()
        if now - self.last_log < _PROGRESS_INTERVAL_SECONDS and self.done_shards < self.num_shards:
            return
        self.last_log = now
        rate = self.done_images / max(now - self.start, 1e-9)
        remaining_minutes = (self.num_images - self.done_images) / max(rate, 1e-9) / 60
        logging.info("Wrote %d of %d shards, %d of %d images, %.0f images/s, about "
                     "%.0f min left.", self.done_shards, self.num_shards,
                     self.done_images, self.num_images, rate, remaining_minutes)


def _run_tasks(tasks, num_workers):
    """Writes every shard and returns their results in the order of `tasks`."""
    progress = _Progress(len(tasks), sum(len(task.paths) for task in tasks))
    results = [None] * len(tasks)
    if num_workers == 1:
        for position, task in enumerate(tasks):
            results[position] = _write_shard(task)
            progress.update(len(task.paths))
        return results

    # TensorFlow does not survive fork, so workers start as fresh processes.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        num_workers, mp_context=context, initializer=_init_worker
    ) as executor:
        futures = {executor.submit(_write_shard, task): position
                   for position, task in enumerate(tasks)}
        try:
            for future in concurrent.futures.as_completed(futures):
                position = futures[future]
                results[position] = future.result()
                progress.update(len(tasks[position].paths))
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def _merge_split_report(results):
    """Adds up the shard results of one split into its report."""
    converted = _FileCounter()
    skipped = _FileCounter()
    for result in results:
        for counter, key in ((converted, "converted"), (skipped, "skipped")):
            for reason, entry in result[key].items():
                counter.add(reason, entry["first_files"], entry["count"])
    return {
        "written": sum(result["written"] for result in results),
        "converted": converted.to_dict(),
        "skipped": skipped.to_dict(),
    }


def _describe_files(entries):
    if not entries:
        return "none"
    parts = []
    for reason, entry in entries.items():
        names = ", ".join(entry["first_files"])
        more = entry["count"] - len(entry["first_files"])
        if more:
            names += f" and {more} more"
        parts.append(f"{entry['count']} {reason} ({names})")
    return "; ".join(parts)


def _log_report(report, num_shards):
    for split, split_report in report.items():
        logging.info("%s: wrote %d images into %d shards. Converted to JPEG: %s. "
                     "Skipped: %s.", split, split_report["written"], num_shards[split],
                     _describe_files(split_report["converted"]),
                     _describe_files(split_report["skipped"]))


def build_tfrecords(data_dir, output_dir, num_train_shards=1024,
                    num_validation_shards=128, num_workers=None, seed=0,
                    validation_labels=None):
    """Converts the train and validation images of a folder tree into shards.

    Args:
        data_dir: root of the tree, `data_dir/train/<class>/<image>` and
            `data_dir/validation/<class>/<image>` (or `val/`). Labels are the
            indices of the sorted class folders of `train/`.
        output_dir: folder for the shards and `dataset_info.json`. It may
            exist, but must not contain shards or an info file already.
        num_train_shards: number of training shards. More shards than images
            are reduced to one shard per image, with a warning.
        num_validation_shards: number of validation shards, likewise.
        num_workers: processes that write shards in parallel. None uses one
            per CPU core. The shards are the same for any number.
        seed: seed of the shuffle that assigns files to shards.
        validation_labels: label file of a flat validation folder, as
            ILSVRC-2012 ships it; see `image_folder.read_label_file`.

    Returns:
        The report: for each split, the number of images `written`, and the
        `converted` and `skipped` files by reason, each with a `count` and the
        `first_files` in sorted order.

    Raises:
        FileNotFoundError: if `data_dir` or one of its splits is missing.
        FileExistsError: if `output_dir` already contains shards.
        ValueError: for a bad shard or worker count, or a bad folder tree.
    """
    _check_output_dir(output_dir)
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be at least 1. Received: {num_workers}")

    train = image_folder.list_images(data_dir, image_folder.TRAIN_SPLIT)
    validation = image_folder.list_images(data_dir, image_folder.VALIDATION_SPLIT,
                                          class_names=train.class_names,
                                          label_file=validation_labels)
    image_lists = {tfrecords.TRAIN_SPLIT: train, tfrecords.VALIDATION_SPLIT: validation}
    requested_shards = {tfrecords.TRAIN_SPLIT: num_train_shards,
                        tfrecords.VALIDATION_SPLIT: num_validation_shards}
    num_shards = {split: _clamp_num_shards(split, requested_shards[split], len(images))
                  for split, images in image_lists.items()}

    tasks = []
    for split, images in image_lists.items():
        tasks.extend(_plan_shards(images, split, num_shards[split], seed, data_dir, output_dir))
    num_workers = min(num_workers or os.cpu_count() or 1, len(tasks))

    info = {
        "class_names": list(train.class_names),
        "label_offset": 0,
        "num_shards": num_shards,
        "data_dir": os.path.abspath(data_dir),
        "seed": seed,
        # Until the end, readers see an unfinished conversion.
        "complete": False,
    }
    tf.io.gfile.makedirs(output_dir)
    tfrecords.write_dataset_info(output_dir, info)
    logging.info("Writing %d images into %d shards in %s with %d workers.",
                 sum(len(task.paths) for task in tasks), len(tasks), output_dir, num_workers)

    results = _run_tasks(tasks, num_workers)

    report = {}
    for split in image_lists:
        split_results = [result for result in results if result["split"] == split]
        report[split] = _merge_split_report(split_results)
        info.setdefault("shard_bytes", {})[split] = [result["bytes"] for result in split_results]
    info["num_examples"] = {split: report[split]["written"] for split in report}
    info["report"] = report
    info["complete"] = True
    tfrecords.write_dataset_info(output_dir, info)
    _log_report(report, num_shards)
    return report


def _define_flags():
    # Defined only when run as a program, so that importing this module next
    # to alexnet_tf.train does not define --data_dir twice.
    flags.DEFINE_string("data_dir", None, "Root of the image tree: train/ and validation/ "
                        "(or val/) with one subfolder of images per class.")
    flags.DEFINE_string("output_dir", None, "Folder for the shards and dataset_info.json. "
                        "It must not contain shards yet.")
    flags.DEFINE_integer("num_train_shards", 1024, "Number of training shards.", lower_bound=1)
    flags.DEFINE_integer("num_validation_shards", 128, "Number of validation shards.",
                         lower_bound=1)
    flags.DEFINE_integer("num_workers", None, "Processes writing shards in parallel. "
                         "Default: one per CPU core.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the shuffle that assigns images to shards.")
    flags.DEFINE_string("validation_labels", None, "Label file for a flat validation folder, "
                        "as ILSVRC-2012 ships it: one class name (synset) or class index from 0 "
                        "per line, for the images in sorted file-name order.")
    flags.mark_flags_as_required(["data_dir", "output_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    try:
        build_tfrecords(FLAGS.data_dir, FLAGS.output_dir, FLAGS.num_train_shards,
                        FLAGS.num_validation_shards, FLAGS.num_workers, FLAGS.seed,
                        FLAGS.validation_labels)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    _define_flags()
    app.run(main)
