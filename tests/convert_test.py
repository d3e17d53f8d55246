"""Tests of the conversion of torchvision and Caffe AlexNet weights."""

import importlib.util
import os
import subprocess
import sys

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import convert
from alexnet_tf import model as model_lib
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import preprocessing
from alexnet_tf import serving

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10

# Source-layout shapes of torchvision's and Caffe's AlexNet at 10 classes:
# conv (out, in / groups, height, width), fully connected (out, in).
TORCHVISION_SHAPES = {
    "conv1": (64, 3, 11, 11), "conv2": (192, 64, 5, 5), "conv3": (384, 192, 3, 3),
    "conv4": (256, 384, 3, 3), "conv5": (256, 256, 3, 3), "fc6": (4096, 9216),
    "fc7": (4096, 4096), "fc8": (NUM_CLASSES, 4096),
}
CAFFE_SHAPES = {
    "conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
    "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216),
    "fc7": (4096, 4096), "fc8": (NUM_CLASSES, 4096),
}


def random_weights(weights_format, seed=0):
    """Returns a weight dict in the source layout, with He-scaled random weights.

    He scaling keeps activations near the input's scale through the layers,
    so that Caffe's LRN, which acts on activations in the hundreds, matters.
    """
    shapes = TORCHVISION_SHAPES if weights_format == "torchvision" else CAFFE_SHAPES
    rng = np.random.default_rng(seed)
    arrays = {}
    for layer_name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        weight = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in))
        bias = rng.normal(0.0, 0.1, shape[0]).astype(np.float32)
        arrays[convert.weight_key(weights_format, layer_name, "weight")] = weight
        arrays[convert.weight_key(weights_format, layer_name, "bias")] = bias
    return arrays


# A NumPy forward pass of both networks in their own frameworks' conventions:
# NCHW feature maps, flattening in channel, row, column order.

def conv2d(x, weight, bias, stride=1, padding=0, groups=1):
    """Convolution of NCHW `x` with an (out, in / groups, kh, kw) weight, as Caffe and PyTorch."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kernel_height, kernel_width = weight.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel_height, kernel_width), (2, 3))
    windows = windows[:, :, ::stride, ::stride]
    in_per_group = x.shape[1] // groups
    out_per_group = weight.shape[0] // groups
    outputs = [
        np.einsum(
            "nchwij,ocij->nohw",
            windows[:, group * in_per_group:(group + 1) * in_per_group],
            weight[group * out_per_group:(group + 1) * out_per_group],
        )
        for group in range(groups)
    ]
    return np.concatenate(outputs, axis=1) + bias[:, None, None]


def relu(x):
    return np.maximum(x, 0)


def max_pool(x):
    """3x3 max pooling with stride 2, rounding the output size down."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), (2, 3))
    return windows[:, :, ::2, ::2].max(axis=(-2, -1))


def caffe_lrn(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's across-channel LRN, with bvlc_alexnet's settings: alpha is divided by local_size."""
    half = local_size // 2
    squares = np.pad(x**2, ((0, 0), (half, half), (0, 0), (0, 0)))
    sums = sum(squares[:, offset:offset + x.shape[1]] for offset in range(local_size))
    return x / (k + alpha / local_size * sums) ** beta


def adaptive_average_pool(x, output_size=6):
    """PyTorch's adaptive_avg_pool2d: windows from floor(i * n / 6) to ceil((i + 1) * n / 6)."""
    height, width = x.shape[2:]
    output = np.zeros(x.shape[:2] + (output_size, output_size))
    for row in range(output_size):
        top, bottom = row * height // output_size, -(-(row + 1) * height // output_size)
        for column in range(output_size):
            left, right = column * width // output_size, -(-(column + 1) * width // output_size)
            output[:, :, row, column] = x[:, :, top:bottom, left:right].mean(axis=(2, 3))
    return output


def torchvision_forward(inputs, arrays):
    """torchvision's AlexNet in eval mode on NCHW inputs normalized the torchvision way."""
    def layer(name):
        key = convert.weight_key("torchvision", name, "weight")
        return arrays[key].astype(np.float64), arrays[key[:-len("weight")] + "bias"]

    x = max_pool(relu(conv2d(inputs, *layer("conv1"), stride=4, padding=2)))
    x = max_pool(relu(conv2d(x, *layer("conv2"), padding=2)))
    x = relu(conv2d(x, *layer("conv3"), padding=1))
    x = relu(conv2d(x, *layer("conv4"), padding=1))
    x = max_pool(relu(conv2d(x, *layer("conv5"), padding=1)))
    x = adaptive_average_pool(x).reshape(len(x), -1)
    for name in ("fc6", "fc7"):
        weight, bias = layer(name)
        x = relu(x @ weight.T + bias)
    weight, bias = layer("fc8")
    return x @ weight.T + bias


def caffe_forward(inputs, arrays):
    """Caffe's bvlc_alexnet in test mode on NCHW BGR inputs minus the mean."""
    def layer(name):
        return arrays[f"{name}_weight"].astype(np.float64), arrays[f"{name}_bias"]

    x = max_pool(caffe_lrn(relu(conv2d(inputs, *layer("conv1"), stride=4))))
    x = max_pool(caffe_lrn(relu(conv2d(x, *layer("conv2"), padding=2, groups=2))))
    x = relu(conv2d(x, *layer("conv3"), padding=1))
    x = relu(conv2d(x, *layer("conv4"), padding=1, groups=2))
    x = max_pool(relu(conv2d(x, *layer("conv5"), padding=1, groups=2)))
    x = x.reshape(len(x), -1)
    for name in ("fc6", "fc7"):
        weight, bias = layer(name)
        x = relu(x @ weight.T + bias)
    weight, bias = layer("fc8")
    return x @ weight.T + bias


def random_pixels(image_size, seed=0):
    """Returns two RGB images, NHWC, on a 0-255 scale."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (2, image_size, image_size, 3))


def project_inputs(pixels):
    """This project's model input: RGB 0-255 minus the per-channel mean."""
    return (pixels - np.array(preprocessing.IMAGENET_RGB_MEAN)).astype(np.float32)


def relative_error(actual, expected):
    return np.abs(actual - expected).max() / np.abs(expected).max()


class ConvertTest(tf.test.TestCase):

    def write_npz(self, arrays, name="weights.npz"):
        path = os.path.join(self.create_tempdir().full_path, name)
        np.savez(path, **arrays)
        return path

    def test_torchvision_logits_match_reference(self):
        arrays = random_weights("torchvision")
        # 159 pixels leave a 4x4 pool5 output, which the adaptive pooling
        # spreads over 6x6 with overlapping windows.
        pixels = random_pixels(159)
        torchvision_inputs = (
            (pixels / 255 - model_lib.TORCHVISION_RGB_MEAN) / model_lib.TORCHVISION_RGB_STDDEV
        ).transpose(0, 3, 1, 2)

        model = convert.build_model(arrays, "torchvision", image_size=159)

        expected = torchvision_forward(torchvision_inputs, arrays)
        logits = model(project_inputs(pixels), training=False).numpy()
        self.assertEqual(model.get_layer("pool5").output.shape, (None, 4, 4, 256))
        # The two means differ by up to 0.5 of 255, which the folded bias
        # covers everywhere but at conv1 outputs that reach into the padding.
        self.assertLess(relative_error(logits, expected), 1e-3)
        self.assertAllEqual(np.argmax(logits, axis=1), np.argmax(expected, axis=1))

    def test_torchvision_interior_is_exact(self):
        arrays = random_weights("torchvision")
        pixels = random_pixels(63)
        torchvision_inputs = (
            (pixels / 255 - model_lib.TORCHVISION_RGB_MEAN) / model_lib.TORCHVISION_RGB_STDDEV
        ).transpose(0, 3, 1, 2)
        model = convert.build_model(arrays, "torchvision", image_size=63)
        conv1 = keras.Model(model.input, model.get_layer("conv1").output)

        outputs = conv1(project_inputs(pixels)).numpy().transpose(0, 3, 1, 2)

        weight = arrays["features.0.weight"].astype(np.float64)
        expected = relu(conv2d(torchvision_inputs, weight, arrays["features.0.bias"], 4, 2))
        # Output rows and columns 1 to 13 of 15 see no padding.
        self.assertAllClose(outputs[:, :, 1:-1, 1:-1], expected[:, :, 1:-1, 1:-1],
                            rtol=1e-4, atol=1e-4)
        self.assertNotAllClose(outputs[:, :, 0], expected[:, :, 0], rtol=1e-6, atol=1e-6)

    def test_caffe_logits_match_reference(self):
        arrays = random_weights("caffe")
        pixels = random_pixels(227)
        bgr_mean = np.array(preprocessing.IMAGENET_RGB_MEAN)[::-1]
        caffe_inputs = (pixels[..., ::-1] - bgr_mean).transpose(0, 3, 1, 2)

        model = convert.build_model(arrays, "caffe")

        expected = caffe_forward(caffe_inputs, arrays)
        logits = model(project_inputs(pixels), training=False).numpy()
        self.assertEqual(model.input_shape, (None, 227, 227, 3))
        self.assertLess(relative_error(logits, expected), 1e-4)

    def test_caffe_lrn_changes_the_reference(self):
        # Guards the test above: with these weights, Caffe's LRN is not a no-op.
        arrays = random_weights("caffe")
        pixels = random_pixels(227)[:1]
        inputs = (pixels[..., ::-1] - np.array(preprocessing.IMAGENET_RGB_MEAN)[::-1])
        conv1 = relu(conv2d(inputs.transpose(0, 3, 1, 2),
                            arrays["conv1_weight"].astype(np.float64), arrays["conv1_bias"], 4))

        normalized = caffe_lrn(conv1)

        self.assertLess(normalized.max() / conv1.max(), 0.9)

    def test_converted_dir_exports_and_predicts(self):
        arrays = random_weights("torchvision")
        weights_path = self.write_npz(arrays)
        output_dir = os.path.join(self.create_tempdir().full_path, "converted")

        model_config = convert.convert(weights_path, "torchvision", output_dir, image_size=63)

        saved_config = model_dir_lib.read_model_config(output_dir)
        self.assertEqual(saved_config["variant"], "torchvision")
        self.assertEqual(saved_config["image_size"], 63)
        self.assertEqual(saved_config["resize_size"], 256)
        self.assertEqual(saved_config["class_names"][:2], ["class_0000", "class_0001"])
        self.assertLen(saved_config["class_names"], NUM_CLASSES)
        self.assertTrue(saved_config["run_id"])
        self.assertEqual(saved_config["class_names"], model_config["class_names"])

        model = serving.build_model(saved_config)
        checkpoint_path, epoch = model_dir_lib.restore_model(output_dir, model)
        self.assertEqual(epoch, 0)
        self.assertEndsWith(checkpoint_path, "ckpt-0")
        expected = convert.build_model(arrays, "torchvision", image_size=63)
        images = project_inputs(random_pixels(63))
        self.assertAllClose(model(images), expected(images), rtol=1e-6, atol=1e-6)

        export_dir = os.path.join(output_dir, "export")
        serving.export_from_checkpoint(output_dir, export_dir)
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        image_bytes = tf.io.encode_png(tf.cast(random_pixels(80)[0], tf.uint8))
        outputs = serve(image_bytes=tf.reshape(image_bytes, [1]))
        preprocessed = preprocessing.preprocess_for_eval(image_bytes, 63, 256)
        probabilities = tf.nn.softmax(model(preprocessed[tf.newaxis], training=False))
        self.assertAllClose(outputs["probabilities"], probabilities, atol=1e-5)

    def test_class_names_file(self):
        weights_path = self.write_npz(random_weights("caffe"))
        names_path = os.path.join(self.create_tempdir().full_path, "names.txt")
        names = [f"n{index:08d}" for index in range(NUM_CLASSES)]
        with open(names_path, "w") as file:
            file.write("\n".join(names) + "\n")
        output_dir = os.path.join(self.create_tempdir().full_path, "converted")

        convert.convert(weights_path, "caffe", output_dir, class_names_file=names_path)

        saved_config = model_dir_lib.read_model_config(output_dir)
        self.assertEqual(saved_config["class_names"], names)
        self.assertEqual(saved_config["variant"], "caffe")
        self.assertEqual(saved_config["image_size"], 227)

    def test_wrong_class_count_rejected(self):
        weights_path = self.write_npz(random_weights("caffe"))
        names_path = os.path.join(self.create_tempdir().full_path, "names.txt")
        with open(names_path, "w") as file:
            file.write("a\nb\nc\n")
        output_dir = os.path.join(self.create_tempdir().full_path, "converted")

        with self.assertRaisesRegex(ValueError, "lists 3 class names, but the weights have 10"):
            convert.convert(weights_path, "caffe", output_dir, class_names_file=names_path)
        self.assertFalse(os.path.exists(output_dir))


class ConvertErrorTest(tf.test.TestCase):

    def test_wrong_shape_names_key_and_shapes(self):
        arrays = random_weights("caffe")
        # conv2 without groups would see all 96 conv1 channels.
        arrays["conv2_weight"] = np.zeros((256, 96, 5, 5), np.float32)

        with self.assertRaisesRegex(
            ValueError, r"conv2_weight: expected shape \(256, 48, 5, 5\), found \(256, 96, 5, 5\)"
        ):
            convert.build_model(arrays, "caffe")

    def test_wrong_fc6_shape_rejected(self):
        arrays = random_weights("torchvision")
        arrays["classifier.1.weight"] = np.zeros((4096, 256), np.float32)

        with self.assertRaisesRegex(
            ValueError, r"classifier.1.weight: expected shape \(4096, 9216\), found \(4096, 256\)"
        ):
            convert.build_model(arrays, "torchvision", image_size=63)

    def test_missing_key_named(self):
        arrays = random_weights("caffe")
        del arrays["fc7_bias"]

        with self.assertRaisesRegex(ValueError, r"Missing keys: \['fc7_bias'\]"):
            convert.build_model(arrays, "caffe")

    def test_unexpected_key_named(self):
        arrays = random_weights("torchvision")
        arrays["features.1.running_mean"] = np.zeros(64, np.float32)

        with self.assertRaisesRegex(ValueError, r"Unexpected keys: \['features.1.running_mean'\]"):
            convert.build_model(arrays, "torchvision", image_size=63)

    def test_caffe_keys_for_torchvision_rejected(self):
        with self.assertRaisesRegex(ValueError, "These are caffe's keys: pass --format=caffe"):
            convert.build_model(random_weights("caffe"), "torchvision")

    def test_fc8_bias_must_be_a_vector(self):
        arrays = random_weights("caffe")
        arrays["fc8_bias"] = np.zeros((1, NUM_CLASSES), np.float32)

        with self.assertRaisesRegex(ValueError, r"fc8_bias: expected shape \(num_classes,\)"):
            convert.build_model(arrays, "caffe")

    def test_caffe_image_size_needs_6x6_pool5(self):
        with self.assertRaisesRegex(ValueError, "image_size from 227 to 258. Received: image_size=67"):
            convert.build_model(random_weights("caffe"), "caffe", image_size=67)

    def test_unknown_format(self):
        with self.assertRaisesRegex(ValueError, "weights_format='keras'"):
            convert.read_weights(__file__, "keras")

    def test_missing_weight_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "no_such.npz"):
            convert.read_weights("no_such.npz", "caffe")

    def test_pth_rejected_for_caffe(self):
        path = os.path.join(self.create_tempdir().full_path, "bvlc_alexnet.pth")
        with open(path, "wb") as file:
            file.write(b"not read")

        with self.assertRaisesRegex(ValueError, "'.pth'.*--format=caffe: expected .npz"):
            convert.read_weights(path, "caffe")

    @absltest.skipIf(importlib.util.find_spec("torch") is not None, "PyTorch is installed.")
    def test_pth_without_torch_says_how_to_install(self):
        path = os.path.join(self.create_tempdir().full_path, "alexnet.pth")
        with open(path, "wb") as file:
            file.write(b"not read")

        with self.assertRaisesRegex(ImportError, "pip install torch"):
            convert.read_weights(path, "torchvision")

    def test_non_empty_output_dir_rejected(self):
        output_dir = self.create_tempdir().full_path
        kept_path = os.path.join(output_dir, "notes.txt")
        with open(kept_path, "w") as file:
            file.write("mine")

        with self.assertRaisesRegex(FileExistsError, "is not empty"):
            convert.convert("unused.npz", "caffe", output_dir)
        with open(kept_path) as file:
            self.assertEqual(file.read(), "mine")

    def test_command_reports_error_without_traceback(self):
        output_dir = self.create_tempdir().full_path
        with open(os.path.join(output_dir, "notes.txt"), "w") as file:
            file.write("mine")

        result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.convert", "--weights=unused.npz",
             "--format=caffe", f"--output_dir={output_dir}"],
            capture_output=True, text=True, cwd=REPO_ROOT,
        )

        self.assertEqual(result.returncode, 1)
        self.assertIn("error: Output directory", result.stderr)
        self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
    absltest.main()
