"""Tests of the LRN, grouped convolution and adaptive pooling layers."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import layers


def lrn_reference(x, size, bias, alpha, beta):
    """Computes LRN as Krizhevsky et al. (2012) define it, clipping the window at the edges."""
    x = x.astype(np.float64)
    channels = x.shape[-1]
    output = np.empty_like(x)
    for c in range(channels):
        low = max(0, c - size // 2)
        high = min(channels, c + size // 2 + 1)
        squares = np.sum(x[..., low:high] ** 2, axis=-1)
        output[..., c] = x[..., c] / (bias + alpha * squares) ** beta
    return output


def adaptive_pooling_reference(x, output_height, output_width):
    """Averages NHWC `x` over PyTorch's adaptive windows: floor(i * n / out) to ceil((i + 1) * n / out)."""
    def windows(size, output_size):
        return [(i * size // output_size, -(-(i + 1) * size // output_size))
                for i in range(output_size)]

    output = np.zeros((x.shape[0], output_height, output_width, x.shape[3]))
    for row, (top, bottom) in enumerate(windows(x.shape[1], output_height)):
        for column, (left, right) in enumerate(windows(x.shape[2], output_width)):
            output[:, row, column] = x[:, top:bottom, left:right].mean(axis=(1, 2))
    return output


class LocalResponseNormalizationTest(tf.test.TestCase, parameterized.TestCase):

    def tearDown(self):
        keras.config.set_dtype_policy("float32")
        super().tearDown()

    @parameterized.named_parameters(
        ("paper", 5, 2.0, 1e-4, 0.75, 1.0),
        ("strong_alpha_shows_edges", 5, 2.0, 0.1, 0.75, 3.0),
        ("window_three", 3, 1.0, 0.05, 0.5, 2.0),
        ("window_one", 1, 2.0, 0.2, 0.75, 2.0),
    )
    def test_matches_numpy_reference(self, size, bias, alpha, beta, scale):
        x = np.random.default_rng(0).normal(size=(2, 4, 5, 7)).astype(np.float32) * scale
        layer = layers.LocalResponseNormalization(size=size, bias=bias, alpha=alpha, beta=beta)

        output = layer(x)

        self.assertEqual(output.shape, x.shape)
        self.assertAllClose(output, lrn_reference(x, size, bias, alpha, beta), rtol=1e-5, atol=1e-6)

    def test_edge_channels_sum_fewer_terms(self):
        # With all ones, channel 0 sums 3 squares and channel 3 sums 5 when n=5.
        x = np.ones((1, 1, 1, 7), np.float32)
        output = layers.LocalResponseNormalization(size=5, bias=1.0, alpha=1.0, beta=1.0)(x)

        self.assertAllClose(output[0, 0, 0], [1 / 4, 1 / 5, 1 / 6, 1 / 6, 1 / 6, 1 / 5, 1 / 4])

    @parameterized.parameters("mixed_float16", "mixed_bfloat16")
    def test_low_precision_policy_computes_in_float32(self, policy):
        keras.config.set_dtype_policy(policy)
        x = np.random.default_rng(1).normal(size=(2, 3, 3, 16)).astype(np.float32) * 4
        layer = layers.LocalResponseNormalization()

        output = layer(x)

        self.assertEqual(output.dtype, policy.split("_")[1])
        self.assertAllClose(
            tf.cast(output, tf.float32), lrn_reference(x, 5, 2.0, 1e-4, 0.75), rtol=1e-2, atol=1e-2
        )

    def test_float16_squares_overflow_stays_finite(self):
        keras.config.set_dtype_policy("mixed_float16")
        # 300 ** 2 exceeds float16's maximum of 65504.
        x = np.full((1, 2, 2, 8), 300.0, np.float32)

        output = layers.LocalResponseNormalization()(x)

        self.assertTrue(np.all(np.isfinite(tf.cast(output, tf.float32).numpy())))

    def test_runs_under_xla(self):
        x = np.random.default_rng(2).normal(size=(1, 3, 3, 6)).astype(np.float32)
        layer = layers.LocalResponseNormalization()

        output = tf.function(layer, jit_compile=True)(x)

        self.assertAllClose(output, lrn_reference(x, 5, 2.0, 1e-4, 0.75), rtol=1e-5)

    def test_config_round_trip(self):
        layer = layers.LocalResponseNormalization(size=3, bias=1.0, alpha=2e-5, beta=0.5, name="lrn")

        config = layer.get_config()
        restored = layers.LocalResponseNormalization.from_config(config)

        self.assertEqual(config["size"], 3)
        self.assertEqual(config["bias"], 1.0)
        self.assertEqual(config["alpha"], 2e-5)
        self.assertEqual(config["beta"], 0.5)
        self.assertEqual(restored.get_config(), config)

    def test_keras_file_round_trip(self):
        inputs = keras.Input((4, 4, 6))
        outputs = layers.LocalResponseNormalization(size=3, alpha=0.3)(inputs)
        model = keras.Model(inputs, outputs)
        path = os.path.join(self.create_tempdir().full_path, "lrn.keras")
        x = np.random.default_rng(3).normal(size=(2, 4, 4, 6)).astype(np.float32)

        model.save(path)
        restored = keras.saving.load_model(path)

        self.assertIsInstance(restored.layers[-1], layers.LocalResponseNormalization)
        self.assertEqual(restored.layers[-1].size, 3)
        self.assertAllClose(restored(x), model(x))

    @parameterized.named_parameters(
        ("even_size", {"size": 4}, "size=4"),
        ("zero_size", {"size": 0}, "size=0"),
        ("zero_bias", {"bias": 0.0}, "bias=0.0"),
        ("negative_alpha", {"alpha": -1.0}, "alpha=-1.0"),
        ("negative_beta", {"beta": -0.5}, "beta=-0.5"),
    )
    def test_invalid_arguments_name_the_value(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            layers.LocalResponseNormalization(**kwargs)


class GroupedConv2DTest(tf.test.TestCase):

    def test_matches_keras_grouped_convolution(self):
        x = np.random.default_rng(4).normal(size=(2, 9, 9, 8)).astype(np.float32)
        reference = keras.layers.Conv2D(6, 3, padding="same", groups=2)
        grouped = layers.GroupedConv2D(6, 3, padding="same", groups=2)
        reference.build(x.shape)
        grouped.build(x.shape)
        grouped.set_weights(reference.get_weights())

        self.assertEqual(grouped.kernel.shape, (3, 3, 4, 6))
        self.assertAllClose(grouped(x), reference(x), rtol=1e-5, atol=1e-5)

    def test_groups_see_only_their_channels(self):
        layer = layers.GroupedConv2D(4, 1, groups=2, use_bias=False, kernel_initializer="ones")
        x = np.zeros((1, 1, 1, 4), np.float32)
        x[..., :2] = 1.0  # Only the first group's input channels are nonzero.

        output = layer(x).numpy()

        self.assertAllClose(output[0, 0, 0, :2], [2.0, 2.0])
        self.assertAllClose(output[0, 0, 0, 2:], [0.0, 0.0])

    def test_keras_file_round_trip(self):
        inputs = keras.Input((5, 5, 4))
        outputs = layers.GroupedConv2D(4, 3, groups=2, name="conv")(inputs)
        model = keras.Model(inputs, outputs)
        path = os.path.join(self.create_tempdir().full_path, "grouped.keras")
        x = np.random.default_rng(5).normal(size=(1, 5, 5, 4)).astype(np.float32)

        model.save(path)
        restored = keras.saving.load_model(path)

        self.assertEqual(restored.get_layer("conv").groups, 2)
        self.assertAllClose(restored(x), model(x))


def two_convolutions_with_batch_guard():
    """A model in which a second convolution reads the first's output, guarded."""
    inputs = keras.Input((8, 8, 3))
    x = layers.NonEmptyBatch()(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Conv2D(5, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = layers.TrimBatch()([x, inputs])
    return keras.Model(inputs, outputs)


class BatchGuardTest(tf.test.TestCase):

    def test_empty_batch_gives_empty_output(self):
        model = two_convolutions_with_batch_guard()

        outputs = model(np.zeros((0, 8, 8, 3), np.float32))

        self.assertEqual(outputs.shape, (0, 5))

    def test_empty_batch_in_graph_mode(self):
        model = two_convolutions_with_batch_guard()

        outputs = tf.function(model)(tf.zeros((0, 8, 8, 3)))

        self.assertEqual(outputs.shape, (0, 5))

    def test_stand_in_is_one_image_of_zeros(self):
        outputs = layers.NonEmptyBatch()(tf.ones((0, 2, 2, 3)))

        self.assertAllEqual(outputs, tf.zeros((1, 2, 2, 3)))

    def test_other_batches_pass_unchanged(self):
        model = two_convolutions_with_batch_guard()
        images = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype(np.float32)
        unguarded = keras.Model(model.input, model.layers[-2].output)

        self.assertAllEqual(layers.NonEmptyBatch()(images), images)
        self.assertAllClose(model(images), unguarded(images))


class AdaptiveAveragePooling2DTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(
        (1, 1), (1, 4), (4, 1), (2, 3), (5, 7), (6, 6), (10, 13), (13, 13)
    )
    def test_matches_pytorch_windows(self, height, width):
        x = np.random.default_rng(height * 100 + width).normal(size=(2, height, width, 3))
        x = x.astype(np.float32)
        layer = layers.AdaptiveAveragePooling2D(6)
        expected = adaptive_pooling_reference(x, 6, 6)

        eager = layer(x)
        traced = tf.function(layer)(x)

        self.assertEqual(eager.shape, (2, 6, 6, 3))
        self.assertAllClose(eager, expected, atol=1e-5)
        self.assertAllClose(traced, expected, atol=1e-5)

    def test_channels_first_single_pixel(self):
        x = np.random.default_rng(6).normal(size=(2, 3, 1, 1)).astype(np.float32)
        layer = layers.AdaptiveAveragePooling2D((4, 5), data_format="channels_first")

        outputs = tf.function(layer)(x)

        self.assertEqual(outputs.shape, (2, 3, 4, 5))
        self.assertAllClose(outputs, np.broadcast_to(x, (2, 3, 4, 5)))

    def test_keras_file_round_trip(self):
        inputs = keras.Input((1, 1, 4))
        outputs = layers.AdaptiveAveragePooling2D(6, name="avgpool")(inputs)
        model = keras.Model(inputs, outputs)
        path = os.path.join(self.create_tempdir().full_path, "avgpool.keras")
        x = np.random.default_rng(7).normal(size=(1, 1, 1, 4)).astype(np.float32)

        model.save(path)
        restored = keras.saving.load_model(path)

        self.assertIsInstance(restored.get_layer("avgpool"), layers.AdaptiveAveragePooling2D)
        self.assertEqual(tuple(restored.get_layer("avgpool").output_size), (6, 6))
        self.assertAllClose(restored(x), model(x))


if __name__ == "__main__":
    absltest.main()
