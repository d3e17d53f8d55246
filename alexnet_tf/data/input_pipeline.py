"""tf.data pipelines that turn a `records.Source` into batches of images and labels.

Whatever the source, the records go through the same steps: a check that
skips (or stops at) bad image files, decoding with the crop, flip and PCA
lighting of `preprocessing`, and batching.
"""

import dataclasses
from typing import Optional

from absl import logging
import tensorflow as tf

from alexnet_tf import preprocessing
from alexnet_tf.data import bad_images as bad_images_lib
from alexnet_tf.data import records
from alexnet_tf.data import tfrecords

_BYTES_PER_MEGABYTE = 1 << 20


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """Settings of the input pipeline that trade speed, memory and repeatability.

    Attributes:
        shuffle_buffer_size: records held for shuffling when the source
            shuffles only whole files (TFRecord shards, TFDS). Each is an
            encoded image, about 110 KB for ImageNet.
        cache: keep the encoded images in memory after the first epoch; for
            data sets that fit in RAM.
        strict_decoding: stop at the first bad image file with an error that
            names it, instead of skipping it.
        deterministic: produce elements in a fixed order even when parallel
            work finishes out of order; slower. Augmentation is repeatable
            for a given seed either way.
        private_threads: size of a thread pool of the pipeline's own; 0 uses
            the shared pool of TensorFlow.
        autotune_ram_budget_mb: memory that tf.data autotuning may use for
            buffers, in MiB; 0 leaves TensorFlow's default (half of the RAM).
    """

    shuffle_buffer_size: int = 10_000
    cache: bool = False
    strict_decoding: bool = False
    deterministic: bool = False
    private_threads: int = 0
    autotune_ram_budget_mb: int = 0


def _tf_data_options(options):
    tf_options = tf.data.Options()
    tf_options.deterministic = options.deterministic
    if options.private_threads:
        tf_options.threading.private_threadpool_size = options.private_threads
    if options.autotune_ram_budget_mb:
        tf_options.autotune.ram_budget = options.autotune_ram_budget_mb * _BYTES_PER_MEGABYTE
    # Sources shard by input context themselves; automatic sharding would
    # shard again, or warn that it cannot.
    tf_options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
    )
    return tf_options


def _keep_valid_images(dataset, source, options, bad_images):
    """Drops records whose image is bad, or fails naming the first one if strict."""

    def is_valid(record):
        valid, reason = bad_images_lib.check_image(record[records.IMAGE])
        if options.strict_decoding:
            check = tf.debugging.Assert(
                valid,
                [
                    f"{bad_images_lib.BAD_IMAGE} in {source.description} (", reason,
                    "): ", record[records.NAME],
                    ". Remove or re-encode it, or run without --strict_decoding "
                    "to skip bad files.",
                ],
            )
            with tf.control_dependencies([check]):
                return tf.identity(valid)

        return tf.cond(
            valid,
            lambda: tf.constant(True),
            lambda: bad_images.record_tensors(record[records.NAME], reason),
        )

    # One sequential filter costs less than a parallel check map followed
    # by a filter and a map that drops the flag: the check is a few string
    # operations, far cheaper than the stages' own overhead.
    return dataset.filter(is_valid)


def _batch_skipping_errors(dataset, batch_size, training, strict):
    """Batches decoded images, dropping those whose decoding failed unless `strict`.

    In training, a map right before the batch lets tf.data fuse the two and
    write each image straight into its batch. An `ignore_errors` between them
    prevents the fusion, which cost about a tenth of the input rate on a
    2-core CPU. So in training an image that fails to decode drops its whole
    batch, a rare loss when the data repeats without end. Evaluation drops
    only the image, so that every other image is scored.
    """
    if strict:
        return dataset.batch(batch_size, drop_remainder=training)
    if training:
        return dataset.batch(batch_size, drop_remainder=True).ignore_errors(log_warning=True)
    return dataset.ignore_errors(log_warning=True).batch(batch_size)


def _read_for_training(source, options, seed, input_context):
    """Reads the source's records shuffled anew each epoch, repeated forever."""
    if options.cache:
        # Cached records would replay the first epoch's file order, so the
        # whole cached split is shuffled instead.
        dataset = source.read(input_context=input_context, shuffle=False).cache()
        buffer_size = source.num_examples or options.shuffle_buffer_size
    else:
        dataset = source.read(input_context=input_context, shuffle=True, seed=seed)
        buffer_size = 0 if source.fully_shuffled else options.shuffle_buffer_size

    if buffer_size > 1:
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset


def make_dataset(
    source,
    batch_size,
    training,
    image_size,
    resize_size=preprocessing.DEFAULT_RESIZE_SIZE,
    pca_stddev=preprocessing.DEFAULT_PCA_STDDEV,
    seed=None,
    input_context=None,
    options: Optional[InputOptions] = None,
    bad_images: Optional[bad_images_lib.BadImageLog] = None,
    eval_preprocess=None,
):
    """Builds the input pipeline of one split for one input pipeline.

    Training data is shuffled each epoch, repeated without end and augmented,
    and its batches are all full, so a fixed number of steps per epoch never
    runs out of data, whatever number of bad files were skipped. Evaluation
    data is read once in order with a central crop, and its last batch may be
    partial.

    Bad image files (empty, truncated, not an image) are skipped, counted and
    named in `bad_images`, or stop the pipeline with an error naming the file
    when `options.strict_decoding` is set. A file that passes the checks of
    `bad_images.check_image` but still fails to decode is dropped with a
    warning from TensorFlow and is not counted; in training its whole batch
    is dropped with it.

    Args:
        source: a `records.Source`.
        batch_size: examples per batch of this pipeline, that is the
            per-replica batch size under a `tf.distribute` strategy.
        training: whether to shuffle, repeat and augment.
        image_size: side of the model's input, in pixels.
        resize_size: shorter side the crops are taken from, in pixels.
        pca_stddev: standard deviation of the PCA lighting coefficients.
        seed: integer seed of the shuffle and the augmentation, or None.
        input_context: a `tf.distribute.InputContext`. With several input
            pipelines each reads a disjoint part of the source.
        options: an `InputOptions`; None for the defaults.
        bad_images: a `bad_images.BadImageLog` that counts skipped files;
            None to log them in a new one.
        eval_preprocess: for evaluation pipelines, a function from the encoded
            image bytes of one record to what the batches contain, such as
            `preprocessing.ten_crops`. None takes the central crop of
            `preprocessing.preprocess_for_eval`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 images of shape
        `(batch, image_size, image_size, 3)`, or a batch of what
        `eval_preprocess` returns, and int32 labels of shape `(batch,)`.

    Raises:
        ValueError: if `eval_preprocess` is given for a training pipeline.
    """
    if training and eval_preprocess is not None:
        raise ValueError(
            "eval_preprocess applies only to evaluation pipelines, because training "
            "always uses preprocessing.preprocess_for_train. Pass training=False, or "
            "leave eval_preprocess out."
        )
    options = options or InputOptions()
    split_name = "training split" if training else "validation split"
    bad_images = bad_images or bad_images_lib.BadImageLog(f"{split_name} of {source.description}")

    if training:
        dataset = _read_for_training(source, options, seed, input_context)
    else:
        dataset = source.read(input_context=input_context, shuffle=False)
        if options.cache:
            dataset = dataset.cache()
    dataset = _keep_valid_images(dataset, source, options, bad_images)

    if training:
        # Repeating after the check ends the data set, instead of looping for
        # ever, when not a single image is valid.
        dataset = dataset.repeat()
        # One stateless seed pair per example keeps augmentation repeatable
        # under parallel, non-deterministic map order.
        augmentation_seeds = tf.data.Dataset.random(seed=seed).batch(2)
        dataset = tf.data.Dataset.zip(dataset, augmentation_seeds)

        def load_train(record, augmentation_seed):
            image = preprocessing.preprocess_for_train(
                record[records.IMAGE], image_size, resize_size, pca_stddev, augmentation_seed
            )
            return image, record[records.LABEL]

        dataset = dataset.map(load_train, num_parallel_calls=tf.data.AUTOTUNE)
    else:

        def central_crop(image_bytes):
            return preprocessing.preprocess_for_eval(image_bytes, image_size, resize_size)

        preprocess = eval_preprocess or central_crop

        def load_eval(record):
            return preprocess(record[records.IMAGE]), record[records.LABEL]

        dataset = dataset.map(load_eval, num_parallel_calls=tf.data.AUTOTUNE)

    dataset = _batch_skipping_errors(dataset, batch_size, training, options.strict_decoding)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return dataset.with_options(_tf_data_options(options))


def distribute_dataset(strategy, source, global_batch_size, training, **kwargs):
    """Builds one pipeline per input worker with the per-replica batch size.

    Args:
        strategy: a `tf.distribute.Strategy`.
        source: a `records.Source`.
        global_batch_size: examples per step over all replicas.
        training: whether to shuffle, repeat and augment.
        **kwargs: further arguments of `make_dataset`.

    Returns:
        A distributed dataset to pass to `keras.Model.fit` or `evaluate`.
    """

    def dataset_fn(input_context):
        per_replica_batch_size = input_context.get_per_replica_batch_size(global_batch_size)
        logging.info(
            "Input pipeline %d of %d reads %s.",
            input_context.input_pipeline_id + 1, input_context.num_input_pipelines,
            source.description,
        )
        return make_dataset(
            source,
            per_replica_batch_size,
            training,
            input_context=input_context,
            **kwargs,
        )

    return strategy.distribute_datasets_from_function(dataset_fn)


def data_error_message(error):
    """Returns one line for a bad image file, damaged shard or bad label, else None.

    Entry points print this line instead of the traceback of a failed read.

    Args:
        error: a `tf.errors.OpError` raised while iterating a pipeline.

    Returns:
        The message without the assertion's brackets, or None if `error` is
        another error.
    """
    # A failed tf.debugging.Assert prints each part in brackets:
    # "... [Invalid image file in ... (] [truncated JPEG...] [): ] [PATH] [. Remove ...]".
    start = error.message.find(bad_images_lib.BAD_IMAGE)
    if start >= 0:
        return error.message[start:].splitlines()[0].replace("] [", "").rstrip("]")
    return tfrecords.read_error_message(error)
