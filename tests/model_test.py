"""Tests of the AlexNet model's structure, size and initialization."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from alexnet_tf import layers
from alexnet_tf import model as model_lib

PAPER_LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


class AlexNetTest(tf.test.TestCase, parameterized.TestCase):

    def test_paper_parameter_count(self):
        model = model_lib.AlexNet(num_classes=1000)

        # Weights plus biases, layer by layer; conv2, conv4 and conv5 see half
        # of their input channels because of the two groups.
        expected = (
            (11 * 11 * 3 * 96 + 96)
            + (5 * 5 * 48 * 256 + 256)
            + (3 * 3 * 256 * 384 + 384)
            + (3 * 3 * 192 * 384 + 384)
            + (3 * 3 * 192 * 256 + 256)
            + (6 * 6 * 256 * 4096 + 4096)
            + (4096 * 4096 + 4096)
            + (4096 * 1000 + 1000)
        )
        self.assertEqual(expected, 60_965_224)
        self.assertEqual(model.count_params(), 60_965_224)

    def test_paper_feature_map_shapes(self):
        model = model_lib.AlexNet(num_classes=1000)

        self.assertEqual(model.input_shape, (None, 227, 227, 3))
        self.assertEqual(model.get_layer("conv1").output.shape, (None, 55, 55, 96))
        self.assertEqual(model.get_layer("pool1").output.shape, (None, 27, 27, 96))
        self.assertEqual(model.get_layer("conv2").output.shape, (None, 27, 27, 256))
        self.assertEqual(model.get_layer("pool2").output.shape, (None, 13, 13, 256))
        self.assertEqual(model.get_layer("conv5").output.shape, (None, 13, 13, 256))
        self.assertEqual(model.get_layer("pool5").output.shape, (None, 6, 6, 256))
        self.assertEqual(model.output_shape, (None, 1000))

    def test_layer_names_and_groups(self):
        model = model_lib.AlexNet(num_classes=10, image_size=67)

        for name in PAPER_LAYER_NAMES:
            self.assertIsNotNone(model.get_layer(name))
        for name in ("conv2", "conv4", "conv5"):
            self.assertEqual(model.get_layer(name).groups, 2, name)
        for name in ("conv1", "conv3"):
            self.assertEqual(model.get_layer(name).groups, 1, name)
        self.assertIsInstance(model.get_layer("lrn1"), layers.LocalResponseNormalization)
        self.assertIsInstance(model.get_layer("lrn2"), layers.LocalResponseNormalization)
        self.assertEqual(model.get_layer("dropout6").rate, 0.5)
        self.assertEqual(model.get_layer("dropout7").rate, 0.5)

    def test_paper_initialization(self):
        model = model_lib.AlexNet(num_classes=10, image_size=67, seed=1)

        for name in PAPER_LAYER_NAMES:
            kernel, bias = model.get_layer(name).get_weights()
            expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            self.assertAllEqual(bias, np.full_like(bias, expected_bias), msg=name)
            self.assertAllClose(kernel.mean(), 0.0, atol=2e-3, msg=name)
            self.assertAllClose(kernel.std(), 0.01, rtol=0.1, msg=name)

    def test_glorot_uniform_initialization(self):
        model = model_lib.AlexNet(
            num_classes=10, image_size=67, initialization="glorot_uniform", seed=1
        )

        kernel, bias = model.get_layer("fc6").get_weights()
        self.assertAllEqual(bias, np.zeros_like(bias))
        # Glorot uniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)).
        limit = np.sqrt(6 / (kernel.shape[0] + kernel.shape[1]))
        self.assertLessEqual(np.abs(kernel).max(), limit)
        self.assertAllClose(kernel.std(), limit / np.sqrt(3), rtol=0.05)
        fc8_kernel, fc8_bias = model.get_layer("fc8").get_weights()
        self.assertAllEqual(fc8_bias, np.zeros_like(fc8_bias))
        self.assertAllClose(fc8_kernel.std(), 0.01, rtol=0.1)

    @parameterized.parameters((67, 1), (99, 2), (131, 3), (227, 6))
    def test_output_size(self, image_size, expected):
        self.assertEqual(model_lib.output_size(image_size), expected)

    def test_smallest_image_size_trains_a_step(self):
        model = model_lib.AlexNet(num_classes=3, image_size=model_lib.MIN_IMAGE_SIZE)
        images = tf.random.normal((2, 67, 67, 3))

        logits = model(images, training=True)

        self.assertEqual(logits.shape, (2, 3))
        self.assertTrue(np.all(np.isfinite(logits.numpy())))

    @parameterized.named_parameters(
        ("too_small_image", {"image_size": 66}, "image_size=66"),
        ("no_classes", {"num_classes": 0}, "num_classes=0"),
        ("dropout_one", {"dropout_rate": 1.0}, "dropout_rate=1.0"),
        ("unknown_initialization", {"initialization": "xavier"}, "initialization='xavier'"),
    )
    def test_invalid_arguments_name_the_value(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            model_lib.AlexNet(**kwargs)


if __name__ == "__main__":
    absltest.main()
