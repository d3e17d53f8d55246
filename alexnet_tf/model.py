"""The AlexNet network of Krizhevsky, Sutskever and Hinton (NIPS 2012)."""

import keras

from alexnet_tf import layers as alexnet_layers

# Each entry: layer name, filters, kernel size, stride, padding, groups.
_CONV_LAYERS = (
    ("conv1", 96, 11, 4, "valid", 1),
    ("conv2", 256, 5, 1, "same", 2),
    ("conv3", 384, 3, 1, "same", 1),
    ("conv4", 384, 3, 1, "same", 2),
    ("conv5", 256, 3, 1, "same", 2),
)
_FC_UNITS = 4096

# The paper (section 5) sets these biases to 1 so that the ReLUs start with
# positive inputs, and all other biases to 0.
_PAPER_UNIT_BIAS_LAYERS = frozenset({"conv2", "conv4", "conv5", "fc6", "fc7"})
_PAPER_WEIGHT_STDDEV = 0.01

INITIALIZATIONS = ("paper", "glorot_uniform")
MIN_IMAGE_SIZE = 67


def output_size(image_size):
    """Returns the spatial size of pool5's output for a square input, in pixels.

    Args:
        image_size: height and width of the input, in pixels.

    Returns:
        The height (equal to the width) of the feature map fed to fc6: 6 for 227.
    """
    size = (image_size - 11) // 4 + 1  # conv1: 11x11, stride 4, no padding.
    for _ in range(3):  # pool1, pool2 and pool5: 3x3, stride 2, no padding.
        size = (size - 3) // 2 + 1 if size >= 3 else 0
    return size


def _initializers(initialization, layer_name, seed):
    """Returns the (kernel, bias) initializers of one layer."""
    if initialization == "paper":
        kernel = keras.initializers.RandomNormal(stddev=_PAPER_WEIGHT_STDDEV, seed=seed)
        bias_value = 1.0 if layer_name in _PAPER_UNIT_BIAS_LAYERS else 0.0
        return kernel, keras.initializers.Constant(bias_value)

    if layer_name == "fc8":
        # Small logits at the start keep the first losses near log(num_classes).
        kernel = keras.initializers.RandomNormal(stddev=_PAPER_WEIGHT_STDDEV, seed=seed)
    else:
        kernel = keras.initializers.GlorotUniform(seed=seed)
    return kernel, keras.initializers.Zeros()


def AlexNet(
    num_classes=1000,
    image_size=227,
    dropout_rate=0.5,
    initialization="paper",
    seed=None,
    name="alexnet",
):
    """Builds AlexNet as a Keras functional model that outputs logits.

    The layers follow the paper (section 3.5, figure 2): conv1 96x11x11 stride 4,
    LRN, 3x3 stride-2 max pooling; conv2 256x5x5 in two groups, LRN, pooling;
    conv3 384x3x3; conv4 384x3x3 and conv5 256x3x3 in two groups, pooling; fc6
    and fc7 with 4096 units and dropout; fc8. The two groups are the paper's two
    GPUs, each seeing only its half of the channels. With 1000 classes the model
    has 60,965,224 parameters, as Caffe's bvlc_alexnet.

    The default input is 227x227 and not the 224x224 the paper states, because
    an 11x11 stride-4 convolution without padding maps 227 pixels to the 55x55
    feature maps of the paper's figure, while 224 gives 54x54. Caffe and
    tf_cnn_benchmarks use 227 for the same reason. Smaller inputs, down to 67
    pixels, keep every layer and shrink the feature maps, which makes CPU runs
    and tests practical.

    Args:
        num_classes: number of output logits. Defaults to 1000.
        image_size: height and width of the input images, in pixels, at least
            67. Defaults to 227.
        dropout_rate: dropout rate of fc6 and fc7. Defaults to 0.5.
        initialization: `"paper"` draws weights from N(0, 0.01) and sets the
            biases of conv2, conv4, conv5, fc6 and fc7 to 1, as the paper does.
            With it, training can stay at chance for epochs: Caffe's authors
            saw a flat loss, and so did a Fashion-MNIST trial at 67x67 pixels.
            `"glorot_uniform"` draws conv1 to fc7 from Glorot's uniform
            distribution (Keras' default), fc8 from N(0, 0.01), and sets all
            biases to 0. He normal is not offered: on mean-subtracted 0-255
            pixels it diverged at learning rate 0.01 in the same trial.
            Defaults to `"paper"`.
        seed: integer seed of the weight initializers, or None.
        name: model name. Defaults to `"alexnet"`.

    Returns:
        A `keras.Model` mapping float images of shape
        `(batch, image_size, image_size, 3)` to logits of shape
        `(batch, num_classes)`.

    Raises:
        ValueError: if an argument is out of range.
    """
    if num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1. Received: num_classes={num_classes}")
    if output_size(image_size) < 1:
        raise ValueError(
            f"Expected image_size >= {MIN_IMAGE_SIZE}, the smallest input that leaves "
            f"a 1x1 feature map after pool5. Received: image_size={image_size}"
        )
    if not 0 <= dropout_rate < 1:
        raise ValueError(
            f"Expected 0 <= dropout_rate < 1. Received: dropout_rate={dropout_rate}"
        )
    if initialization not in INITIALIZATIONS:
        raise ValueError(
            f"Expected initialization in {INITIALIZATIONS}. "
            f"Received: initialization={initialization!r}"
        )

    def initializer_kwargs(layer_name, index):
        layer_seed = None if seed is None else seed + index
        kernel, bias = _initializers(initialization, layer_name, layer_seed)
        return {"kernel_initializer": kernel, "bias_initializer": bias}

    images = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = images
    for index, (layer_name, filters, kernel_size, stride, padding, groups) in enumerate(
        _CONV_LAYERS
    ):
        x = alexnet_layers.GroupedConv2D(
            filters,
            kernel_size,
            strides=stride,
            padding=padding,
            groups=groups,
            activation="relu",
            name=layer_name,
            **initializer_kwargs(layer_name, index),
        )(x)
        if layer_name in ("conv1", "conv2"):
            x = alexnet_layers.LocalResponseNormalization(name=f"lrn{layer_name[-1]}")(x)
        if layer_name in ("conv1", "conv2", "conv5"):
            # Overlapping pooling (section 3.4): 3x3 windows, stride 2.
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"pool{layer_name[-1]}")(x)

    x = keras.layers.Flatten(name="flatten")(x)
    for index, layer_name in enumerate(("fc6", "fc7"), start=len(_CONV_LAYERS)):
        x = keras.layers.Dense(
            _FC_UNITS, activation="relu", name=layer_name, **initializer_kwargs(layer_name, index)
        )(x)
        x = keras.layers.Dropout(dropout_rate, name=f"dropout{layer_name[-1]}")(x)
    logits = keras.layers.Dense(
        num_classes, name="fc8", **initializer_kwargs("fc8", len(_CONV_LAYERS) + 2)
    )(x)

    return keras.Model(images, logits, name=name)
