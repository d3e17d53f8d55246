"""The AlexNet network of Krizhevsky, Sutskever and Hinton (NIPS 2012) and three variants."""

import dataclasses
import itertools

import keras

from alexnet_tf import layers as alexnet_layers

VARIANTS = ("paper", "paper_single_tower", "caffe", "torchvision")
INITIALIZATIONS = ("paper", "glorot_uniform", "caffe", "pytorch")

# Each entry: layer name, filters, kernel size, stride, padding, groups. An
# integer padding adds that many rows and columns of zeros on every side, as
# PyTorch's Conv2d does. For the stride-1 layers here "same" pads the same way.
_PAPER_CONV_LAYERS = (
    ("conv1", 96, 11, 4, "valid", 1),
    ("conv2", 256, 5, 1, "same", 2),
    ("conv3", 384, 3, 1, "same", 1),
    ("conv4", 384, 3, 1, "same", 2),
    ("conv5", 256, 3, 1, "same", 2),
)
_SINGLE_TOWER_CONV_LAYERS = tuple(layer[:5] + (1,) for layer in _PAPER_CONV_LAYERS)
_TORCHVISION_CONV_LAYERS = (
    ("conv1", 64, 11, 4, 2, 1),
    ("conv2", 192, 5, 1, "same", 1),
    ("conv3", 384, 3, 1, "same", 1),
    ("conv4", 256, 3, 1, "same", 1),
    ("conv5", 256, 3, 1, "same", 1),
)
_FC_UNITS = 4096
_LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")

# Arguments of layers.LocalResponseNormalization. The paper (section 3.3) uses
# k=2, n=5, alpha=1e-4, beta=0.75. Caffe's bvlc_alexnet sets local_size 5,
# alpha 1e-4 and beta 0.75, and keeps Caffe's default k=1. Caffe divides alpha
# by local_size, so its setting is alpha=2e-5 in this project's layer.
_PAPER_LRN = {"size": 5, "bias": 2.0, "alpha": 1e-4, "beta": 0.75}
_CAFFE_LRN = {"size": 5, "bias": 1.0, "alpha": 1e-4 / 5, "beta": 0.75}

# The paper (section 5) sets these biases to 1 so that the ReLUs start with
# positive inputs, and all other biases to 0. Caffe's bvlc_alexnet sets the
# same biases to 0.1, and draws fc6 and fc7 from N(0, 0.005).
_PAPER_UNIT_BIAS_LAYERS = frozenset({"conv2", "conv4", "conv5", "fc6", "fc7"})
_PAPER_WEIGHT_STDDEV = 0.01
_CAFFE_BIAS = 0.1
_CAFFE_FC_WEIGHT_STDDEV = 0.005

# torchvision's models take (pixels / 255 - mean) / stddev with these RGB
# values. Their ImageNet mean is within 0.5 of this project's on the 0-255 scale.
TORCHVISION_RGB_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_RGB_STDDEV = (0.229, 0.224, 0.225)

MIN_IMAGE_SIZE = 67


@dataclasses.dataclass(frozen=True)
class _VariantSpec:
    """The differences between the variants.

    Attributes:
        conv_layers: the five convolution layers, see `_PAPER_CONV_LAYERS`.
        lrn: LRN arguments, or None for no LRN after conv1 and conv2.
        default_image_size: input side in pixels that gives a 6x6 pool5 output.
        initialization: the variant's own entry of `INITIALIZATIONS`.
        adaptive_pooling: whether an adaptive average pooling to 6x6 follows
            pool5, as in torchvision.
        dropout_before_fc: whether dropout precedes fc6 and fc7, as in
            torchvision, instead of following them, as in the paper.
        input_scale: per-channel factors applied to the mean-subtracted
            0-255 input before conv1, or None.
    """

    conv_layers: tuple
    lrn: dict
    default_image_size: int
    initialization: str
    adaptive_pooling: bool = False
    dropout_before_fc: bool = False
    input_scale: tuple = None


_VARIANT_SPECS = {
    "paper": _VariantSpec(_PAPER_CONV_LAYERS, _PAPER_LRN, 227, "paper"),
    "paper_single_tower": _VariantSpec(_SINGLE_TOWER_CONV_LAYERS, _PAPER_LRN, 227, "paper"),
    "caffe": _VariantSpec(_PAPER_CONV_LAYERS, _CAFFE_LRN, 227, "caffe"),
    "torchvision": _VariantSpec(
        _TORCHVISION_CONV_LAYERS,
        None,
        224,
        "pytorch",
        adaptive_pooling=True,
        dropout_before_fc=True,
        input_scale=tuple(1 / (255 * stddev) for stddev in TORCHVISION_RGB_STDDEV),
    ),
}
_ADAPTIVE_POOLING_SIZE = 6


def _variant_spec(variant):
    if variant not in _VARIANT_SPECS:
        raise ValueError(f"Expected variant in {VARIANTS}. Received: variant={variant!r}")
    return _VARIANT_SPECS[variant]


def default_image_size(variant):
    """Returns the variant's input side in pixels: 224 for torchvision, else 227.

    Raises:
        ValueError: if `variant` is not in `VARIANTS`.
    """
    return _variant_spec(variant).default_image_size


def output_size(image_size, variant="paper"):
    """Returns the spatial size of pool5's output for a square input, in pixels.

    Args:
        image_size: height and width of the input, in pixels.
        variant: an entry of `VARIANTS`. Defaults to `"paper"`.

    Returns:
        The height (equal to the width) of pool5's output: 6 for 227 pixels in
        the paper's variants and for 224 in torchvision's, which then pools
        any size to 6x6 before fc6.

    Raises:
        ValueError: if `variant` is not in `VARIANTS`.
    """
    _, _, kernel_size, stride, padding, _ = _variant_spec(variant).conv_layers[0]
    padding = padding if isinstance(padding, int) else 0
    size = (image_size + 2 * padding - kernel_size) // stride + 1
    for _ in range(3):  # pool1, pool2 and pool5: 3x3, stride 2, no padding.
        size = (size - 3) // 2 + 1 if size >= 3 else 0
    return size


def min_image_size(variant="paper"):
    """Returns the smallest input side, in pixels, that leaves a 1x1 pool5 output.

    That is `MIN_IMAGE_SIZE` (67) for the paper's variants and 63 for
    torchvision's, whose conv1 pads its input by 2 pixels on each side.

    Raises:
        ValueError: if `variant` is not in `VARIANTS`.
    """
    return next(size for size in itertools.count(1) if output_size(size, variant) >= 1)


def check_image_size(image_size, variant="paper"):
    """Raises a ValueError naming the variant's minimum if `image_size` is too small."""
    minimum = min_image_size(variant)
    if image_size < minimum:
        raise ValueError(
            f"Expected image_size >= {minimum} for variant={variant!r}, the smallest "
            f"input that leaves a 1x1 feature map after pool5. Received: "
            f"image_size={image_size}. Pass an image size of at least {minimum}."
        )


def _initializers(initialization, layer_name, fan_in, seed):
    """Returns the (kernel, bias) initializers of one layer.

    Args:
        initialization: an entry of `INITIALIZATIONS`.
        layer_name: conv1 to fc8.
        fan_in: inputs of one output unit: kernel height x width x input
            channels per group, or input features.
        seed: integer seed, or None. The bias, where random, uses `seed + 1000`.
    """
    if initialization == "paper":
        kernel = keras.initializers.RandomNormal(stddev=_PAPER_WEIGHT_STDDEV, seed=seed)
        bias_value = 1.0 if layer_name in _PAPER_UNIT_BIAS_LAYERS else 0.0
        return kernel, keras.initializers.Constant(bias_value)

    if initialization == "caffe":
        stddev = _CAFFE_FC_WEIGHT_STDDEV if layer_name in ("fc6", "fc7") else _PAPER_WEIGHT_STDDEV
        kernel = keras.initializers.RandomNormal(stddev=stddev, seed=seed)
        bias_value = _CAFFE_BIAS if layer_name in _PAPER_UNIT_BIAS_LAYERS else 0.0
        return kernel, keras.initializers.Constant(bias_value)

    if initialization == "pytorch":
        # PyTorch's default for Conv2d and Linear: kaiming_uniform_ with
        # a=sqrt(5), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the
        # same bound for the bias.
        kernel = keras.initializers.VarianceScaling(
            scale=1 / 3, mode="fan_in", distribution="uniform", seed=seed
        )
        limit = fan_in**-0.5
        bias_seed = None if seed is None else seed + 1000
        return kernel, keras.initializers.RandomUniform(-limit, limit, seed=bias_seed)

    if layer_name == "fc8":
        # Small logits at the start keep the first losses near log(num_classes).
        kernel = keras.initializers.RandomNormal(stddev=_PAPER_WEIGHT_STDDEV, seed=seed)
    else:
        kernel = keras.initializers.GlorotUniform(seed=seed)
    return kernel, keras.initializers.Zeros()


def _check_arguments(num_classes, image_size, dropout_rate, initialization, variant):
    _variant_spec(variant)
    if num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1. Received: num_classes={num_classes}")
    check_image_size(image_size, variant)
    if not 0 <= dropout_rate < 1:
        raise ValueError(
            f"Expected 0 <= dropout_rate < 1. Received: dropout_rate={dropout_rate}"
        )
    if initialization not in INITIALIZATIONS:
        raise ValueError(
            f"Expected initialization in {INITIALIZATIONS}. "
            f"Received: initialization={initialization!r}"
        )


def AlexNet(
    num_classes=1000,
    image_size=None,
    dropout_rate=0.5,
    initialization=None,
    seed=None,
    variant="paper",
    name="alexnet",
    dtype=None,
):
    """Builds AlexNet or one of its well-known variants as a Keras model that outputs logits.

    Every variant names its layers with weights conv1 to conv5 and fc6 to fc8,
    and its pooling layers pool1, pool2 and pool5. Shapes at the default input
    size (height x width x channels):

    | layer | paper, paper_single_tower, caffe | torchvision |
    |---|---|---|
    | input | 227x227x3 | 224x224x3, padded by 2 to 228x228 (pad1) |
    | conv1 11x11 stride 4 | 55x55x96 | 55x55x64 |
    | then | LRN (lrn1), pool1 27x27x96 | pool1 27x27x64 |
    | conv2 5x5 | 27x27x256 | 27x27x192 |
    | then | LRN (lrn2), pool2 13x13x256 | pool2 13x13x192 |
    | conv3, conv4, conv5 3x3 | 13x13x384, 384, 256 | 13x13x384, 256, 256 |
    | pool5 | 6x6x256 | 6x6x256, then 6x6 adaptive average pooling (avgpool) |
    | fc6, fc7, fc8 | 4096 and dropout, 4096 and dropout, num_classes | dropout and 4096, dropout and 4096, num_classes |

    All pooling is 3x3 max pooling with stride 2 and all layers but fc8 end in
    a ReLU. The variants differ as follows:

    - `"paper"`: the network of Krizhevsky et al. (2012), section 3.5 and
      figure 2. conv2, conv4 and conv5 run in two groups, the paper's two
      GPUs, each seeing only its half of the input channels. LRN uses the
      paper's k=2, n=5, alpha=1e-4, beta=0.75. 60,965,224 parameters at 1000
      classes, the count of Caffe's bvlc_alexnet, which has the same shapes.
    - `"paper_single_tower"`: the same widths without groups, so conv2, conv4
      and conv5 see all input channels: 62,378,344 parameters.
    - `"caffe"`: Caffe's bvlc_alexnet, the paper's shapes with LRN in Caffe's
      convention (alpha divided by the window size, k=1), which here is
      alpha=2e-5, bias=1. 60,965,224 parameters. NOTE: Caffe rounds pooling
      output sizes up and this model rounds them down. The two agree only
      where each pooling input is odd, as at 227 and 67 pixels.
    - `"torchvision"`: torchvision's `alexnet`, from the single-GPU network
      of Krizhevsky's "One weird trick" (2014): widths 64-192-384-256-256, no
      groups, no LRN, and conv1 zero-pads its input by 2 pixels. An adaptive
      average pooling makes pool5's output 6x6 at any input size, with
      PyTorch's windows from floor(i * n / 6) to ceil((i + 1) * n / 6).
      Dropout drops the flattened pool5 output (dropout5) and fc6's output
      (dropout6), before fc6 and fc7. 61,100,840 parameters at 1000 classes.
      Its first layer (input_scale) divides the input by 255 times
      torchvision's per-channel standard deviation, so that conv1 receives
      inputs on the scale that torchvision's models are trained and
      initialized for.

    The paper states 224x224 inputs, but an 11x11 stride-4 convolution without
    padding maps 227 pixels to the 55x55 feature maps of its figure, while 224
    gives 54x54. Caffe and tf_cnn_benchmarks use 227 for the same reason.
    Smaller inputs, down to `min_image_size(variant)` pixels, keep every layer
    and shrink the feature maps, which makes CPU runs and tests practical.

    Args:
        num_classes: number of output logits. Defaults to 1000.
        image_size: height and width of the input images, in pixels, at least
            `min_image_size(variant)`: 67, or 63 for torchvision. Defaults to
            None, the variant's `default_image_size`: 227, or 224 for
            torchvision.
        dropout_rate: rate of both dropout layers. Defaults to 0.5.
        initialization: `"paper"` draws weights from N(0, 0.01) and sets the
            biases of conv2, conv4, conv5, fc6 and fc7 to 1, as the paper does.
            With it, training can stay at chance for epochs: Caffe's authors
            saw a flat loss, and so did a Fashion-MNIST trial at 67x67 pixels.
            `"caffe"` is bvlc_alexnet's: N(0, 0.01), N(0, 0.005) for fc6 and
            fc7, and biases of 0.1 where the paper has 1. `"pytorch"` is
            PyTorch's default for Conv2d and Linear layers, which torchvision's
            AlexNet keeps: kernels and biases from U(-1/sqrt(fan_in),
            1/sqrt(fan_in)). `"glorot_uniform"` draws conv1 to fc7 from
            Glorot's uniform distribution (Keras' default), fc8 from
            N(0, 0.01), and sets all biases to 0. He normal is not offered: on
            mean-subtracted 0-255 pixels it diverged at learning rate 0.01 in
            the same trial. Defaults to None, the variant's own: `"paper"` for
            the paper's two variants, `"caffe"` and `"pytorch"`.
        seed: integer seed of the weight initializers, or None.
        variant: an entry of `VARIANTS`. Defaults to `"paper"`.
        name: model name. Defaults to `"alexnet"`.
        dtype: Keras dtype policy of every layer and of the model, as a name
            such as `"mixed_bfloat16"` (see `precision.policy_name`) or a
            `keras.DTypePolicy`. Defaults to None, Keras' global policy
            (`keras.config.dtype_policy()`), which is float32 unless changed.
            Under a mixed policy the variables stay float32 and the layers
            compute in bfloat16 or float16. LRN computes in float32 inside.
            fc8 and trim_batch use the policy's variable dtype, so the logits
            leave the model in float32.

    Returns:
        A `keras.Model` mapping float images of shape
        `(batch, image_size, image_size, 3)`, RGB on a 0-255 scale with the
        ImageNet mean subtracted, to logits of shape `(batch, num_classes)`.
        Every layer is channels last, whatever `keras.config.image_data_format()`
        says, because LRN (`tf.nn.local_response_normalization`) normalizes
        over the last axis.
        Its first and last layers, non_empty_batch and trim_batch, let it take
        an empty batch, see `layers.NonEmptyBatch`.

    Raises:
        ValueError: if an argument is out of range.
    """
    spec = _variant_spec(variant)
    if image_size is None:
        image_size = spec.default_image_size
    if initialization is None:
        initialization = spec.initialization
    _check_arguments(num_classes, image_size, dropout_rate, initialization, variant)

    def initializer_kwargs(layer_name, fan_in):
        index = _LAYER_NAMES.index(layer_name)
        layer_seed = None if seed is None else seed + index
        kernel, bias = _initializers(initialization, layer_name, fan_in, layer_seed)
        return {"kernel_initializer": kernel, "bias_initializer": bias}

    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    images = keras.Input(shape=(image_size, image_size, 3), name="images")
    # A policy name, not the object: Keras records the arguments of layers
    # without get_config as their config, and the object is not JSON.
    x = alexnet_layers.NonEmptyBatch(name="non_empty_batch", dtype=policy.name)(images)
    if spec.input_scale:
        x = keras.layers.Rescaling(spec.input_scale, name="input_scale", dtype=policy)(x)
    features = _convolutional_features(x, spec, initializer_kwargs, policy)
    logits = _classifier(features, spec, num_classes, dropout_rate, initializer_kwargs, policy)
    logits = alexnet_layers.TrimBatch(name="trim_batch", dtype=policy.variable_dtype)(
        [logits, images]
    )
    model = keras.Model(images, logits, name=name)
    # Keras 3.15's functional Model drops a `dtype` argument. Its policy is what
    # `compile(auto_scale_loss=True)` reads to decide on loss scaling.
    model.dtype_policy = policy
    return model


def _convolutional_features(images, spec, initializer_kwargs, policy):
    """Applies conv1 to pool5 (and torchvision's adaptive pooling) to `images`."""
    layer_kwargs = {"data_format": "channels_last", "dtype": policy}
    x = images
    for layer_name, filters, kernel_size, stride, padding, groups in spec.conv_layers:
        if isinstance(padding, int):
            x = keras.layers.ZeroPadding2D(
                padding, name=f"pad{layer_name[-1]}", **layer_kwargs
            )(x)
            padding = "valid"
        fan_in = kernel_size * kernel_size * x.shape[-1] // groups
        x = alexnet_layers.GroupedConv2D(
            filters,
            kernel_size,
            strides=stride,
            padding=padding,
            groups=groups,
            activation="relu",
            name=layer_name,
            **initializer_kwargs(layer_name, fan_in),
            **layer_kwargs,
        )(x)
        if spec.lrn and layer_name in ("conv1", "conv2"):
            x = alexnet_layers.LocalResponseNormalization(
                name=f"lrn{layer_name[-1]}", dtype=policy, **spec.lrn
            )(x)
        if layer_name in ("conv1", "conv2", "conv5"):
            # Overlapping pooling (section 3.4): 3x3 windows, stride 2.
            x = keras.layers.MaxPooling2D(
                3, strides=2, name=f"pool{layer_name[-1]}", **layer_kwargs
            )(x)

    if spec.adaptive_pooling:
        x = alexnet_layers.AdaptiveAveragePooling2D(
            _ADAPTIVE_POOLING_SIZE, name="avgpool", **layer_kwargs
        )(x)
    return x


def _classifier(features, spec, num_classes, dropout_rate, initializer_kwargs, policy):
    """Applies fc6 to fc8, with dropout where the variant has it, to `features`.

    fc8 computes in the policy's variable dtype, float32 under a mixed policy,
    so that the logits, the softmax and the loss are float32. A float32
    cast layer after fc8 would do the same but would add a layer to the
    model. fc8 has under 1% of the network's multiply-adds (4.1M of 720M at
    1000 classes), so computing it in float32 costs little.
    """
    x = keras.layers.Flatten(name="flatten", data_format="channels_last", dtype=policy)(
        features
    )
    for layer_name in ("fc6", "fc7"):
        if spec.dropout_before_fc:
            # Named after the layer whose outputs it drops: flatten (pool5) or fc6.
            x = keras.layers.Dropout(
                dropout_rate, name=f"dropout{int(layer_name[-1]) - 1}", dtype=policy
            )(x)
        fan_in = x.shape[-1]
        x = keras.layers.Dense(
            _FC_UNITS,
            activation="relu",
            name=layer_name,
            dtype=policy,
            **initializer_kwargs(layer_name, fan_in),
        )(x)
        if not spec.dropout_before_fc:
            x = keras.layers.Dropout(
                dropout_rate, name=f"dropout{layer_name[-1]}", dtype=policy
            )(x)
    return keras.layers.Dense(
        num_classes,
        name="fc8",
        dtype=policy.variable_dtype,
        **initializer_kwargs("fc8", x.shape[-1]),
    )(x)
