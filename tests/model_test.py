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
        ("too_small_torchvision_image", {"image_size": 62, "variant": "torchvision"},
         "image_size >= 63 for variant='torchvision'"),
        ("no_classes", {"num_classes": 0}, "num_classes=0"),
        ("dropout_one", {"dropout_rate": 1.0}, "dropout_rate=1.0"),
        ("unknown_initialization", {"initialization": "xavier"}, "initialization='xavier'"),
        ("unknown_variant", {"variant": "vgg"}, "variant='vgg'"),
    )
    def test_invalid_arguments_name_the_value(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            model_lib.AlexNet(**kwargs)


class VariantTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(
        # Weights plus biases, conv1 to fc8. Without groups, conv2, conv4 and
        # conv5 see all 96, 384 and 384 input channels.
        ("paper_single_tower", "paper_single_tower", (
            (11 * 11 * 3 * 96 + 96)
            + (5 * 5 * 96 * 256 + 256)
            + (3 * 3 * 256 * 384 + 384)
            + (3 * 3 * 384 * 384 + 384)
            + (3 * 3 * 384 * 256 + 256)
            + (6 * 6 * 256 * 4096 + 4096)
            + (4096 * 4096 + 4096)
            + (4096 * 1000 + 1000)
        ), 62_378_344),
        # The paper's shapes, as test_paper_parameter_count computes them.
        ("caffe", "caffe", 60_965_224, 60_965_224),
        ("torchvision", "torchvision", (
            (11 * 11 * 3 * 64 + 64)
            + (5 * 5 * 64 * 192 + 192)
            + (3 * 3 * 192 * 384 + 384)
            + (3 * 3 * 384 * 256 + 256)
            + (3 * 3 * 256 * 256 + 256)
            + (6 * 6 * 256 * 4096 + 4096)
            + (4096 * 4096 + 4096)
            + (4096 * 1000 + 1000)
        ), 61_100_840),
    )
    def test_parameter_count(self, variant, expected, published):
        model = model_lib.AlexNet(num_classes=1000, variant=variant)

        self.assertEqual(expected, published)
        self.assertEqual(model.count_params(), published)

    @parameterized.parameters(
        ("paper", 227), ("paper_single_tower", 227), ("caffe", 227), ("torchvision", 224)
    )
    def test_default_image_size(self, variant, expected):
        model = model_lib.AlexNet(num_classes=10, variant=variant)

        self.assertEqual(model_lib.default_image_size(variant), expected)
        self.assertEqual(model.input_shape, (None, expected, expected, 3))
        self.assertEqual(model_lib.output_size(expected, variant), 6)

    @parameterized.parameters(
        ("paper", 67), ("paper_single_tower", 67), ("caffe", 67), ("torchvision", 63)
    )
    def test_min_image_size(self, variant, expected):
        self.assertEqual(model_lib.min_image_size(variant), expected)
        self.assertEqual(model_lib.output_size(expected, variant), 1)
        self.assertEqual(model_lib.output_size(expected - 1, variant), 0)

    def test_paper_min_image_size_constant(self):
        self.assertEqual(model_lib.min_image_size("paper"), model_lib.MIN_IMAGE_SIZE)

    def test_single_tower_has_no_groups(self):
        model = model_lib.AlexNet(num_classes=10, image_size=67, variant="paper_single_tower")

        for name in PAPER_LAYER_NAMES[:5]:
            self.assertEqual(model.get_layer(name).groups, 1, name)
        self.assertEqual(model.get_layer("conv2").kernel.shape, (5, 5, 96, 256))
        self.assertEqual(model.get_layer("conv5").kernel.shape, (3, 3, 384, 256))

    def test_caffe_lrn_settings(self):
        model = model_lib.AlexNet(num_classes=10, image_size=67, variant="caffe")

        for name in ("lrn1", "lrn2"):
            lrn = model.get_layer(name)
            self.assertEqual(lrn.size, 5, name)
            self.assertEqual(lrn.bias, 1.0, name)
            self.assertAllClose(lrn.alpha, 2e-5, rtol=1e-12, msg=name)
            self.assertEqual(lrn.beta, 0.75, name)
        for name in ("conv2", "conv4", "conv5"):
            self.assertEqual(model.get_layer(name).groups, 2, name)

    def test_paper_lrn_settings(self):
        model = model_lib.AlexNet(num_classes=10, image_size=67)

        lrn = model.get_layer("lrn1")
        self.assertEqual(lrn.bias, 2.0)
        self.assertEqual(lrn.alpha, 1e-4)

    def test_caffe_feature_map_shapes(self):
        model = model_lib.AlexNet(num_classes=1000, variant="caffe")

        self.assertEqual(model.get_layer("conv1").output.shape, (None, 55, 55, 96))
        self.assertEqual(model.get_layer("pool2").output.shape, (None, 13, 13, 256))
        self.assertEqual(model.get_layer("pool5").output.shape, (None, 6, 6, 256))

    def test_torchvision_layer_order(self):
        model = model_lib.AlexNet(num_classes=10, variant="torchvision")

        self.assertEqual(
            [layer.name for layer in model.layers],
            ["images", "non_empty_batch", "input_scale", "pad1", "conv1", "pool1", "conv2",
             "pool2", "conv3", "conv4", "conv5", "pool5", "avgpool", "flatten", "dropout5",
             "fc6", "dropout6", "fc7", "fc8", "trim_batch"],
        )

    def test_torchvision_input_scale(self):
        model = model_lib.AlexNet(num_classes=10, variant="torchvision")
        pixel = np.array([[[[51.0, 51.0, 51.0]]]], np.float32)

        scaled = model.get_layer("input_scale")(pixel).numpy().ravel()

        # 51 / (255 * stddev): 0.2 divided by torchvision's standard deviations.
        self.assertAllClose(scaled, [0.2 / 0.229, 0.2 / 0.224, 0.2 / 0.225], rtol=1e-6)

    @parameterized.parameters(*model_lib.VARIANTS)
    def test_empty_batch_gives_no_logits(self, variant):
        model = model_lib.AlexNet(num_classes=4, image_size=67, variant=variant)

        logits = model(np.zeros((0, 67, 67, 3), np.float32), training=False)

        self.assertEqual(logits.shape, (0, 4))

    def test_torchvision_feature_map_shapes(self):
        model = model_lib.AlexNet(num_classes=1000, variant="torchvision")

        self.assertEqual(model.get_layer("pad1").output.shape, (None, 228, 228, 3))
        self.assertEqual(model.get_layer("conv1").output.shape, (None, 55, 55, 64))
        self.assertEqual(model.get_layer("pool1").output.shape, (None, 27, 27, 64))
        self.assertEqual(model.get_layer("conv2").output.shape, (None, 27, 27, 192))
        self.assertEqual(model.get_layer("pool2").output.shape, (None, 13, 13, 192))
        self.assertEqual(model.get_layer("conv3").output.shape, (None, 13, 13, 384))
        self.assertEqual(model.get_layer("conv4").output.shape, (None, 13, 13, 256))
        self.assertEqual(model.get_layer("conv5").output.shape, (None, 13, 13, 256))
        self.assertEqual(model.get_layer("pool5").output.shape, (None, 6, 6, 256))
        self.assertEqual(model.get_layer("avgpool").output.shape, (None, 6, 6, 256))
        self.assertEqual(model.output_shape, (None, 1000))

    def test_torchvision_layers(self):
        model = model_lib.AlexNet(num_classes=10, image_size=63, variant="torchvision")

        self.assertEqual(model.get_layer("pad1").padding, ((2, 2), (2, 2)))
        for name in PAPER_LAYER_NAMES[:5]:
            self.assertEqual(model.get_layer(name).groups, 1, name)
        self.assertEqual(model.get_layer("conv1").padding, "valid")
        self.assertEqual(model.get_layer("conv2").padding, "same")
        self.assertEqual(model.get_layer("dropout5").rate, 0.5)
        self.assertEqual(model.get_layer("dropout6").rate, 0.5)
        # The adaptive pooling turns the 1x1 pool5 output of the smallest input
        # into 6x6, so fc6 always has 9216 inputs.
        self.assertEqual(model.get_layer("pool5").output.shape, (None, 1, 1, 256))
        self.assertEqual(model.get_layer("fc6").kernel.shape, (9216, 4096))
        self.assertIsInstance(model.get_layer("avgpool"), layers.AdaptiveAveragePooling2D)
        lrn_layers = [
            layer for layer in model.layers
            if isinstance(layer, layers.LocalResponseNormalization)
        ]
        self.assertEmpty(lrn_layers)

    @parameterized.parameters(
        ("paper", 67), ("paper_single_tower", 67), ("caffe", 67), ("torchvision", 63)
    )
    def test_smallest_image_size_runs(self, variant, image_size):
        model = model_lib.AlexNet(num_classes=3, image_size=image_size, variant=variant)
        images = tf.random.normal((2, image_size, image_size, 3))

        logits = model(images, training=True)
        traced_logits = tf.function(model)(images, training=False)

        self.assertEqual(logits.shape, (2, 3))
        self.assertTrue(np.all(np.isfinite(logits.numpy())))
        self.assertEqual(traced_logits.shape, (2, 3))

    def test_unknown_variant_in_helpers(self):
        for function in (model_lib.default_image_size, model_lib.min_image_size):
            with self.assertRaisesRegex(ValueError, "variant='vgg'"):
                function("vgg")


class InitializationTest(tf.test.TestCase, parameterized.TestCase):

    def test_caffe_initialization(self):
        model = model_lib.AlexNet(num_classes=10, image_size=67, variant="caffe", seed=1)

        for name in PAPER_LAYER_NAMES:
            kernel, bias = model.get_layer(name).get_weights()
            expected_bias = 0.1 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            expected_stddev = 0.005 if name in ("fc6", "fc7") else 0.01
            self.assertAllClose(bias, np.full_like(bias, expected_bias), msg=name)
            self.assertAllClose(kernel.mean(), 0.0, atol=2e-3, msg=name)
            self.assertAllClose(kernel.std(), expected_stddev, rtol=0.1, msg=name)

    def test_pytorch_initialization(self):
        model = model_lib.AlexNet(num_classes=10, image_size=63, variant="torchvision", seed=1)

        # Inputs per output unit: kernel area x input channels, or features.
        fan_ins = {
            "conv1": 11 * 11 * 3, "conv2": 5 * 5 * 64, "conv3": 3 * 3 * 192,
            "conv4": 3 * 3 * 384, "conv5": 3 * 3 * 256, "fc6": 9216, "fc7": 4096,
            "fc8": 4096,
        }
        for name, fan_in in fan_ins.items():
            kernel, bias = model.get_layer(name).get_weights()
            # float32 rounding may put a value a hair above the float64 bound.
            limit = 1 / np.sqrt(fan_in) * (1 + 1e-6)
            self.assertLessEqual(np.abs(kernel).max(), limit, msg=name)
            self.assertGreater(np.abs(kernel).max(), 0.9 * limit, msg=name)
            self.assertAllClose(kernel.std(), limit / np.sqrt(3), rtol=0.1, msg=name)
            self.assertLessEqual(np.abs(bias).max(), limit, msg=name)
            self.assertGreater(np.unique(bias).size, 1, msg=name)

    def test_pytorch_initialization_of_grouped_convolution(self):
        model = model_lib.AlexNet(
            num_classes=10, image_size=67, initialization="pytorch", seed=1
        )

        kernel, bias = model.get_layer("conv2").get_weights()
        # Each conv2 unit gets 48 of the 96 channels as input.
        limit = 1 / np.sqrt(5 * 5 * 48) * (1 + 1e-6)
        self.assertLessEqual(np.abs(kernel).max(), limit)
        self.assertGreater(np.abs(kernel).max(), 0.9 * limit)
        self.assertLessEqual(np.abs(bias).max(), limit)
        self.assertGreater(np.abs(bias).max(), 0.5 * limit)

    def test_pytorch_bias_differs_from_kernel(self):
        model = model_lib.AlexNet(num_classes=10, image_size=63, variant="torchvision", seed=1)

        kernel, bias = model.get_layer("fc8").get_weights()
        limit = 1 / np.sqrt(4096)
        # The same seed for both would give the bias the kernel's first values.
        self.assertNotAllClose(bias / limit, kernel[0] / limit)
        self.assertNotAllClose(bias / limit, kernel[:, 0] / limit)

    @parameterized.parameters(
        ("paper", "conv2", 1.0), ("paper_single_tower", "conv2", 1.0),
        ("caffe", "conv2", 0.1), ("caffe", "conv1", 0.0),
    )
    def test_variant_default_initialization_biases(self, variant, layer_name, expected):
        model = model_lib.AlexNet(num_classes=10, image_size=67, variant=variant, seed=1)

        bias = model.get_layer(layer_name).bias.numpy()
        self.assertAllClose(bias, np.full_like(bias, expected))

    def test_variant_initialization_can_be_overridden(self):
        model = model_lib.AlexNet(
            num_classes=10, image_size=63, variant="torchvision", initialization="paper",
            seed=1,
        )

        kernel, bias = model.get_layer("conv2").get_weights()
        self.assertAllEqual(bias, np.ones_like(bias))
        self.assertAllClose(kernel.std(), 0.01, rtol=0.1)

    def test_same_seed_same_weights(self):
        first = model_lib.AlexNet(num_classes=10, image_size=63, variant="torchvision", seed=4)
        second = model_lib.AlexNet(num_classes=10, image_size=63, variant="torchvision", seed=4)

        for first_weights, second_weights in zip(first.get_weights(), second.get_weights()):
            self.assertAllEqual(first_weights, second_weights)


if __name__ == "__main__":
    absltest.main()
