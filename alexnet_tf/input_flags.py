"""Command-line flags of the data form and the input pipeline, shared by entry points.

`alexnet_tf.train`, `alexnet_tf.evaluate`, `alexnet_tf.benchmark` and
`alexnet_tf.figures` define them here, so the same flag means the same thing
in each. `run_reporting_errors` gives those entry points the same one-line
errors for bad values, files and data.
"""

from absl import flags
import tensorflow as tf

from alexnet_tf import distribution
from alexnet_tf.data import input_pipeline
from alexnet_tf.data import sources


def _is_dataset_name(value):
    try:
        sources.check_dataset_name(value)
    except ValueError:
        return False
    return True


def define_dataset_flag():
    """Defines --dataset, the form of the data."""
    flags.DEFINE_string(
        "dataset", sources.FOLDER, "Form of the data set: 'folder' for a folder tree, "
        "'tfrecord' for TFRecord shards (see alexnet_tf.data.build_tfrecords), or "
        "'tfds:NAME' for a TensorFlow Datasets data set, such as tfds:imagenet2012.")
    flags.register_validator(
        "dataset", _is_dataset_name,
        message="--dataset must be 'folder', 'tfrecord' or 'tfds:NAME'.")


def define_input_flags():
    """Defines --dataset and the flags of `input_pipeline.InputOptions`."""
    define_dataset_flag()
    flags.DEFINE_bool(
        "strict_decoding", False, "Stop at the first bad image file (empty, truncated, not an "
        "image) with an error naming it. By default such files are skipped, counted in "
        "TensorBoard and named in the log.")
    flags.DEFINE_integer(
        "shuffle_buffer_size", 10_000, "Records kept for shuffling TFRecord and TFDS data, "
        "which are shuffled file by file; each is an encoded image.", lower_bound=0)
    flags.DEFINE_bool(
        "cache_dataset", False, "Keep the encoded images in memory after the first epoch; "
        "for data sets that fit in RAM.")
    flags.DEFINE_bool(
        "deterministic_input", False, "Keep the input order fixed under parallel decoding; "
        "slower. Augmentation is repeatable for a --seed either way.")
    flags.DEFINE_integer(
        "data_threads", 0, "Threads of the input pipeline's own pool; 0 shares TensorFlow's "
        "pool.", lower_bound=0)
    flags.DEFINE_integer(
        "autotune_ram_budget_mb", 0, "Memory tf.data autotuning may use for buffers, in MiB; "
        "0 for TensorFlow's default, half of the RAM.", lower_bound=0)


def define_source_flags():
    """Defines --data_dir and the flags that set how the splits of the data set are read."""
    flags.DEFINE_string(
        "data_dir", None, "Where the data set is. folder: the root of the tree, with train/ and "
        "validation/ (or val/) holding one subfolder of images per class. tfrecord: the folder "
        "of train-*-of-* and validation-*-of-* shards. tfds: the TFDS data folder; default "
        "~/tensorflow_datasets.")
    flags.DEFINE_string(
        "validation_labels", None, "folder only: a label file for a flat validation folder, as "
        "ILSVRC-2012 ships it: one class name (synset) or class index from 0 per line, for the "
        "images in sorted file-name order.")
    flags.DEFINE_integer(
        "label_offset", None, "tfrecord only: subtracted from each stored label. Default: 0 for "
        "shards written by build_tfrecords (as their dataset_info.json records), 1 for other "
        "shards, whose ImageNet labels the common conversion scripts store as 1 to 1000.")
    flags.DEFINE_string(
        "class_names_file", None, "tfrecord only, for shards without the dataset_info.json of "
        "build_tfrecords: a text file with one class name per line, in label order, such as "
        "the 1000 sorted ImageNet synsets.")
    flags.DEFINE_string(
        "tfds_manual_dir", None, "tfds only: folder of manually downloaded files, such as "
        "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar for tfds:imagenet2012.")


def open_sources_from_flags():
    """Opens the training and validation splits that --dataset and the source flags name.

    Returns:
        `(train_source, validation_source)`, see `sources.open_train_and_validation`.

    Raises:
        ValueError: if --data_dir is missing for a folder tree or TFRecord shards.
    """
    values = flags.FLAGS
    sources.check_data_dir(values.dataset, values.data_dir)
    return sources.open_train_and_validation(
        values.dataset,
        values.data_dir,
        class_names_file=values.class_names_file,
        validation_labels=values.validation_labels,
        label_offset=values.label_offset,
        tfds_manual_dir=values.tfds_manual_dir,
    )


def input_options_from_flags():
    """Returns the `input_pipeline.InputOptions` that the parsed flags describe."""
    values = flags.FLAGS
    return input_pipeline.InputOptions(
        shuffle_buffer_size=values.shuffle_buffer_size,
        cache=values.cache_dataset,
        strict_decoding=values.strict_decoding,
        deterministic=values.deterministic_input,
        private_threads=values.data_threads,
        autotune_ram_budget_mb=values.autotune_ram_budget_mb,
    )


def run_reporting_errors(function, *args):
    """Calls `function(*args)`; ends the program with one line on a user or data error.

    Missing files, existing outputs, bad values, bad image files, damaged
    shards and a lost peer worker raise errors whose message names the value
    and the fix, so a traceback would add nothing. Other errors propagate.

    Returns:
        What `function` returns.
    """
    try:
        return function(*args)
    except (FileNotFoundError, FileExistsError, ValueError, distribution.WorkerLost) as error:
        raise SystemExit(f"error: {error}") from None
    except tf.errors.OpError as error:
        message = input_pipeline.data_error_message(error)
        if message is None:
            raise
        raise SystemExit(f"error: {message}") from None

