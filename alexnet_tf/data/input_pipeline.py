"""tf.data pipelines that read an `ImageList` into batches of images and labels."""

import tensorflow as tf

from alexnet_tf import preprocessing

# Leading bytes of JPEG, PNG, GIF and BMP files.
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")
# Start of the error message that names a file that is not an image.
NOT_AN_IMAGE = "Not a JPEG, PNG, GIF or BMP image"


def read_image_file(path):
    """Reads an image file, failing with the path if it is not an image.

    `tf.io.decode_image` alone reports an unknown format without the file, so a
    bad file in a large tree would be hard to find.

    Args:
        path: scalar string tensor.

    Returns:
        Scalar string tensor with the encoded image.
    """
    image_bytes = tf.io.read_file(path)
    has_signature = tf.reduce_any(
        [
            tf.equal(tf.strings.substr(image_bytes, 0, len(signature)), signature)
            for signature in _IMAGE_SIGNATURES
        ]
    )
    check = tf.debugging.Assert(
        has_signature,
        [f"{NOT_AN_IMAGE}; convert or remove this file:", path],
    )
    with tf.control_dependencies([check]):
        return tf.identity(image_bytes)


def make_dataset(
    image_list,
    batch_size,
    training,
    image_size,
    resize_size=preprocessing.DEFAULT_RESIZE_SIZE,
    pca_stddev=preprocessing.DEFAULT_PCA_STDDEV,
    seed=None,
    input_context=None,
):
    """Builds the input pipeline of one split for one input pipeline replica.

    Training data is shuffled at the file level each epoch, repeated without
    end and augmented, and its batches are all full. Evaluation data is read
    once in order with a central crop, and its last batch may be partial.

    Args:
        image_list: an `image_folder.ImageList`.
        batch_size: examples per batch of this pipeline, that is the
            per-replica batch size under a `tf.distribute` strategy.
        training: whether to shuffle, repeat and augment.
        image_size: side of the model's input, in pixels.
        resize_size: shorter side the crops are taken from, in pixels.
        pca_stddev: standard deviation of the PCA lighting coefficients.
        seed: integer seed of the shuffle and the augmentation, or None.
        input_context: a `tf.distribute.InputContext`. With several input
            pipelines each reads a disjoint shard of the files.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 images of shape
        `(batch, image_size, image_size, 3)` and int32 labels of shape `(batch,)`.
    """
    dataset = tf.data.Dataset.from_tensor_slices(
        (list(image_list.paths), tf.constant(image_list.labels, tf.int32))
    )
    if input_context and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(
            input_context.num_input_pipelines, input_context.input_pipeline_id
        )

    if training:
        dataset = dataset.shuffle(len(image_list), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat()
        # One stateless seed pair per example keeps augmentation repeatable
        # under parallel, non-deterministic map order.
        augmentation_seeds = tf.data.Dataset.random(seed=seed).batch(2)
        dataset = tf.data.Dataset.zip(dataset, augmentation_seeds)

        def load_train(example, augmentation_seed):
            path, label = example
            image = preprocessing.preprocess_for_train(
                read_image_file(path), image_size, resize_size, pca_stddev, augmentation_seed
            )
            return image, label

        dataset = dataset.map(load_train, num_parallel_calls=tf.data.AUTOTUNE)
    else:

        def load_eval(path, label):
            image = preprocessing.preprocess_for_eval(read_image_file(path), image_size, resize_size)
            return image, label

        dataset = dataset.map(load_eval, num_parallel_calls=tf.data.AUTOTUNE)

    dataset = dataset.batch(batch_size, drop_remainder=training)
    return dataset.prefetch(tf.data.AUTOTUNE)


def distribute_dataset(strategy, image_list, global_batch_size, training, **kwargs):
    """Builds one pipeline per input worker with the per-replica batch size.

    Args:
        strategy: a `tf.distribute.Strategy`.
        image_list: an `image_folder.ImageList`.
        global_batch_size: examples per step over all replicas.
        training: whether to shuffle, repeat and augment.
        **kwargs: further arguments of `make_dataset`.

    Returns:
        A distributed dataset to pass to `keras.Model.fit` or `evaluate`.
    """

    def dataset_fn(input_context):
        per_replica_batch_size = input_context.get_per_replica_batch_size(global_batch_size)
        return make_dataset(
            image_list,
            per_replica_batch_size,
            training,
            input_context=input_context,
            **kwargs,
        )

    return strategy.distribute_datasets_from_function(dataset_fn)
