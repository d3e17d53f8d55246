"""Keras layers that AlexNet needs and Keras does not ship in the form it needs."""

import keras
from keras import ops
import tensorflow as tf


@keras.saving.register_keras_serializable(package="alexnet_tf")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al., 2012, 3.3).

    Each activation `a[c]` at a pixel is divided by a power of the summed squares
    of its `size` neighbouring channels at the same pixel:

        b[c] = a[c] / (bias + alpha * sum(a[j] ** 2 for j in window(c))) ** beta

    where `window(c)` is `[c - size // 2, c + size // 2]` clipped to the valid
    channels, so edge channels sum over fewer terms. The defaults are the paper's
    k=2, n=5, alpha=1e-4, beta=0.75.

    Mapping to other libraries:
    - `tf.nn.local_response_normalization(depth_radius=size // 2, bias=bias,
      alpha=alpha, beta=beta)` computes exactly this: TensorFlow's alpha is not
      divided by the window size.
    - Caffe's LRN layer divides its `alpha` by `local_size`, so the paper's
      setting is Caffe `alpha = 5e-4, local_size = 5, k = 2`. Caffe's
      bvlc_alexnet uses `alpha = 1e-4, k = 1`, which here is `alpha=2e-5, bias=1`.

    The layer always computes in float32 and returns the layer's compute dtype,
    because `tf.nn.local_response_normalization` has no bfloat16 kernel on CPU,
    fails under XLA in float16, and squares of float16 activations overflow
    above 256.

    Input shape: `(batch, height, width, channels)`, channels last.
    Output shape: the input shape.

    Args:
        size: odd window size n, in channels. Defaults to 5.
        bias: additive constant k, greater than 0. Defaults to 2.0.
        alpha: scale of the sum of squares, not divided by `size`, at least 0.
            Defaults to 1e-4.
        beta: exponent, at least 0. Defaults to 0.75.
        **kwargs: base `keras.layers.Layer` arguments such as `name` and `dtype`.
    """

    def __init__(self, size=5, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(
                f"Expected `size` to be an odd positive integer. Received: size={size!r}"
            )
        if bias <= 0:
            raise ValueError(f"Expected `bias` > 0. Received: bias={bias!r}")
        if alpha < 0:
            raise ValueError(f"Expected `alpha` >= 0. Received: alpha={alpha!r}")
        if beta < 0:
            raise ValueError(f"Expected `beta` >= 0. Received: beta={beta!r}")

        self.size = size
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        normalized = tf.nn.local_response_normalization(
            ops.cast(inputs, "float32"),
            depth_radius=self.size // 2,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
        )
        return ops.cast(normalized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"size": self.size, "bias": self.bias, "alpha": self.alpha, "beta": self.beta}
        )
        return config


@keras.saving.register_keras_serializable(package="alexnet_tf")
class GroupedConv2D(keras.layers.Conv2D):
    """A `Conv2D` whose grouped convolution runs as one convolution per group.

    The weights are those of `keras.layers.Conv2D(groups=groups)`: one kernel of
    shape `(kh, kw, in_channels // groups, filters)`, where output channels
    `[i * filters // groups, (i + 1) * filters // groups)` see only input group
    `i`. This is the layout of the paper's two-GPU layers and of Caffe's `group`.

    Keras routes grouped convolutions on the TensorFlow backend through XLA,
    because TensorFlow's CPU kernel rejects them. Splitting the groups instead
    uses the ordinary convolution kernels, which trained AlexNet faster without
    XLA in a one-off side-by-side trial (TensorFlow 2.21, 2-core AMD EPYC CPU,
    67x67 inputs, batch 128). NOTE: no benchmark in this repository measures it.
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)

        if self.data_format == "channels_last":
            channel_axis = -1
        else:
            channel_axis = 1

        input_groups = ops.split(inputs, self.groups, axis=channel_axis)
        kernel_groups = ops.split(kernel, self.groups, axis=-1)
        outputs = [
            super(GroupedConv2D, self).convolution_op(group_inputs, group_kernel)
            for group_inputs, group_kernel in zip(input_groups, kernel_groups)
        ]
        return ops.concatenate(outputs, axis=channel_axis)


@keras.saving.register_keras_serializable(package="alexnet_tf")
class NonEmptyBatch(keras.layers.Layer):
    """Passes a batch through, but replaces an empty batch with one image of zeros.

    With TensorFlow 2.21's oneDNN operations, which it turned on by default
    on an Intel Xeon CPU with AMX, a convolution given an empty batch returned
    a tensor of its input's shape, so the next convolution failed ("input
    depth must be evenly divisible by filter depth"). `MirroredStrategy` gives some replicas
    empty batches at the end of an evaluation pass, and a serving request may
    hold no images. `TrimBatch` removes the stand-in image from the model's
    output again, so the model's results are unchanged.

    Input shape: `(batch, ...)` with known non-batch dimensions.
    Output shape: `(max(batch, 1), ...)`.
    """

    def call(self, inputs):
        batch_size = tf.shape(inputs)[0]
        stand_in_shape = tf.concat([[1], tf.shape(inputs)[1:]], axis=0)
        outputs = tf.cond(
            batch_size > 0,
            lambda: inputs,
            lambda: tf.zeros(stand_in_shape, inputs.dtype),
        )
        return tf.ensure_shape(outputs, [None, *inputs.shape[1:]])

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="alexnet_tf")
class TrimBatch(keras.layers.Layer):
    """Cuts `outputs` to the batch size of `reference`, undoing `NonEmptyBatch`.

    Call it as `TrimBatch()([outputs, reference])`.
    """

    def call(self, inputs):
        outputs, reference = inputs
        return outputs[: tf.shape(reference)[0]]

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="alexnet_tf")
class AdaptiveAveragePooling2D(keras.layers.AdaptiveAveragePooling2D):
    """Keras' adaptive average pooling, which also takes inputs 1 pixel high or wide.

    Output pixel `(i, j)` averages input rows `floor(i * h / out_h)` to
    `ceil((i + 1) * h / out_h) - 1` and the matching columns, as PyTorch's
    `adaptive_avg_pool2d` does.

    NOTE: Keras 3.15's layer fails inside a `tf.function` when a spatial side
    is 1 pixel, because it runs a 2-pixel pooling window over that side. This
    layer first repeats such a side to the output size, which gives the same
    result: every window then averages copies of the one input pixel.

    Args:
        output_size: integer or (height, width) of the output.
        **kwargs: further arguments of `keras.layers.AdaptiveAveragePooling2D`.
    """

    def call(self, inputs):
        if self.data_format == "channels_last":
            spatial_axes = (1, 2)
        else:
            spatial_axes = (2, 3)

        for axis, output_size in zip(spatial_axes, self.output_size):
            if inputs.shape[axis] == 1:
                inputs = ops.repeat(inputs, output_size, axis=axis)
        return super().call(inputs)
