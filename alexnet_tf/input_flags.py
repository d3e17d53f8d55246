"""Command-line flags of the data form and the input pipeline, shared by entry points.

`alexnet_tf.train` and `alexnet_tf.benchmark` both define them here, so the
same flag means the same thing in both.
"""

from absl import flags

from alexnet_tf.data import input_pipeline
from alexnet_tf.data import sources


def _is_dataset_name(value):
    try:
        sources.check_dataset_name(value)
    except ValueError:
        return False
    return True


def define_input_flags():
    """Defines --dataset and the flags of `input_pipeline.InputOptions`."""
    flags.DEFINE_string(
        "dataset", sources.FOLDER, "Form of the data set: 'folder' for a folder tree, "
        "'tfrecord' for TFRecord shards (see alexnet_tf.data.build_tfrecords), or "
        "'tfds:NAME' for a TensorFlow Datasets data set, such as tfds:imagenet2012.")
    flags.register_validator(
        "dataset", _is_dataset_name,
        message="--dataset must be 'folder', 'tfrecord' or 'tfds:NAME'.")

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
