"""Tests of mixed precision: dtype names, the mixed model, LRN in float16, training and export."""

import json
import math
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import layers
from alexnet_tf import model as model_lib
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import optimizer as optimizer_lib
from alexnet_tf import precision
from alexnet_tf import preprocessing
from alexnet_tf import serving
from alexnet_tf import training
import sample_images
from training_test import ColorTreeTestCase
from training_test import ITERATIONS_KEY
from training_test import one_device
from training_test import scalar_values
from training_test import small_config

_CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def checkpoint_keys(model):
    """Returns the variable names a checkpoint of `model` contains, without its values."""
    path = tf.train.Checkpoint(model=model).write(
        os.path.join(absltest.get_default_test_tmpdir(), f"keys-{id(model)}")
    )
    return sorted(name for name, _ in tf.train.list_variables(path))


class PolicyNameTest(parameterized.TestCase):

    @parameterized.parameters(
        ("float32", "float32"), ("bfloat16", "mixed_bfloat16"), ("float16", "mixed_float16")
    )
    def test_names(self, dtype, expected):
        self.assertEqual(precision.policy_name(dtype), expected)

    def test_every_dtype_has_a_policy(self):
        for dtype in precision.DTYPES:
            self.assertEqual(keras.dtype_policies.get(precision.policy_name(dtype)).compute_dtype,
                             dtype)

    def test_unknown_dtype_names_value_and_choices(self):
        with self.assertRaisesRegex(ValueError, r"'fp16'.*float32.*bfloat16.*float16"):
            precision.policy_name("fp16")

    def test_only_float16_scales_the_loss(self):
        self.assertTrue(precision.needs_loss_scaling("float16"))
        self.assertFalse(precision.needs_loss_scaling("bfloat16"))
        self.assertFalse(precision.needs_loss_scaling("float32"))


class MixedModelTest(tf.test.TestCase, parameterized.TestCase):

    def tearDown(self):
        keras.config.set_dtype_policy("float32")
        keras.config.set_image_data_format("channels_last")
        super().tearDown()

    @parameterized.parameters("bfloat16", "float16")
    def test_dtypes_of_mixed_model(self, dtype):
        model = model_lib.AlexNet(
            num_classes=3, image_size=67, seed=1, dtype=precision.policy_name(dtype)
        )
        images = np.random.default_rng(0).normal(0, 60, (2, 67, 67, 3)).astype(np.float32)

        logits = model(images, training=False)

        self.assertEqual(model.dtype_policy.name, precision.policy_name(dtype))
        self.assertEqual({variable.dtype for variable in model.weights}, {"float32"})
        self.assertEqual(logits.dtype, tf.float32)
        self.assertTrue(np.all(np.isfinite(logits.numpy())))
        for name in _CONV_LAYERS + ("fc6", "fc7"):
            self.assertEqual(model.get_layer(name).compute_dtype, dtype, name)
        self.assertEqual(model.get_layer("fc8").compute_dtype, "float32")
        for name in ("lrn1", "lrn2"):
            lrn_output = model.get_layer(name).output
            self.assertEqual(lrn_output.dtype, dtype, name)

    @parameterized.parameters(*model_lib.VARIANTS)
    def test_mixed_model_has_same_checkpoint_keys(self, variant):
        float32_model = model_lib.AlexNet(num_classes=3, variant=variant, image_size=67)
        mixed_model = model_lib.AlexNet(
            num_classes=3, variant=variant, image_size=67, dtype="mixed_float16"
        )

        self.assertEqual(mixed_model.count_params(), float32_model.count_params())
        self.assertEqual(checkpoint_keys(mixed_model), checkpoint_keys(float32_model))
        self.assertEqual([layer.name for layer in mixed_model.layers],
                         [layer.name for layer in float32_model.layers])

    def test_mixed_model_config_is_json(self):
        # TensorBoard writes the model's JSON config, and warns when it fails.
        model = model_lib.AlexNet(num_classes=3, image_size=67, dtype="mixed_bfloat16")

        config = json.loads(model.to_json())

        self.assertEqual(config["class_name"], "Functional")

    def test_global_policy_is_the_default(self):
        keras.config.set_dtype_policy("mixed_bfloat16")

        model = model_lib.AlexNet(num_classes=3, image_size=67)

        self.assertEqual(model.get_layer("conv1").compute_dtype, "bfloat16")
        self.assertEqual(model.get_layer("fc8").compute_dtype, "float32")

    def test_argument_overrides_global_policy(self):
        keras.config.set_dtype_policy("mixed_bfloat16")

        model = model_lib.AlexNet(num_classes=3, image_size=67, dtype="float32")

        self.assertEqual(model.get_layer("conv1").compute_dtype, "float32")

    def test_channels_last_whatever_keras_config_says(self):
        images = np.random.default_rng(1).normal(0, 60, (2, 67, 67, 3)).astype(np.float32)
        expected = model_lib.AlexNet(num_classes=3, image_size=67, seed=2)(images)
        keras.config.set_image_data_format("channels_first")

        model = model_lib.AlexNet(num_classes=3, image_size=67, seed=2)

        self.assertEqual(model.get_layer("conv1").data_format, "channels_last")
        self.assertEqual(model.get_layer("pool5").data_format, "channels_last")
        self.assertAllClose(model(images), expected, atol=1e-5)


class LrnFloat16Test(tf.test.TestCase, parameterized.TestCase):

    # Every channel of pixel 0 is 300, of pixel 1 is 1000 and of pixel 2 is
    # 60000. Pixel 3 mixes them with 0 and 5. All are exact in float16, and
    # the squares of 300, 1000 and 60000 exceed its maximum of 65504.
    _VALUES = np.array(
        [[300.0] * 6, [1000.0] * 6, [60000.0] * 6, [300.0, 60000.0, 1000.0, 0.0, -60000.0, 5.0]],
        np.float32,
    ).reshape(1, 2, 2, 6)

    def test_squares_overflow_float16(self):
        squares = np.square(self._VALUES.astype(np.float16))

        self.assertFalse(np.all(np.isfinite(squares)))
        self.assertGreater(300.0**2, _FLOAT16_MAX)

    @parameterized.parameters(False, True)
    def test_float16_matches_float32(self, jit_compile):
        float32_layer = layers.LocalResponseNormalization(dtype="float32")
        float16_layer = layers.LocalResponseNormalization(dtype="mixed_float16")
        float16_call = tf.function(float16_layer, jit_compile=jit_compile)

        expected = float32_layer(self._VALUES).numpy()
        output = float16_call(self._VALUES)

        self.assertEqual(output.dtype, tf.float16)
        self.assertTrue(np.all(np.isfinite(output.numpy())))
        # LRN runs in float32, and only its output is rounded to float16,
        # whose 11 significant bits give a relative error of at most 2**-11.
        self.assertAllClose(
            tf.cast(output, tf.float32), expected, rtol=2.0**-11, atol=0.0
        )


class LossScalingTest(tf.test.TestCase, parameterized.TestCase):

    def _build(self, dtype, jit_compile=False):
        config = small_config("unused", "unused", dtype=dtype)
        return training._build_and_compile(config, 3, 4, jit_compile=jit_compile)

    def test_float16_wraps_optimizer(self):
        model, optimizer = self._build("float16")

        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        self.assertIs(model.optimizer.inner_optimizer, optimizer)
        self.assertIsInstance(optimizer, optimizer_lib.MomentumWithWeightDecay)
        self.assertNotEmpty(optimizer.momentums)

    def test_keras_auto_scaling_sees_mixed_model(self):
        model = model_lib.AlexNet(num_classes=3, image_size=67, dtype="mixed_float16")

        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")

        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    @parameterized.parameters("float32", "bfloat16")
    def test_other_dtypes_do_not_wrap(self, dtype):
        model, optimizer = self._build(dtype)

        self.assertIs(model.optimizer, optimizer)

    def test_float16_steps_go_through_loss_scale(self):
        model, optimizer = self._build("float16", jit_compile=True)
        images = np.random.default_rng(3).normal(0, 60, (24, 67, 67, 3)).astype(np.float32)
        labels = np.arange(24) % 3
        steps = 4

        model.fit(images, labels, batch_size=6, epochs=1, steps_per_epoch=steps, verbose=0)

        # Each step either applies its gradients and counts one optimizer
        # iteration, or finds them non-finite and halves the scale instead.
        halvings = math.log2(2.0**15 / float(model.optimizer.dynamic_scale.numpy()))
        self.assertEqual(int(optimizer.iterations.numpy()) + halvings, steps)


class TrainingDtypeTest(ColorTreeTestCase, parameterized.TestCase):

    @parameterized.parameters("float32", "bfloat16", "float16")
    def test_loss_falls(self, dtype):
        # XLA, because float16 without it is very slow on the CPU.
        config = small_config(self.data_dir, self.model_dir, num_epochs=3, dtype=dtype,
                              jit_compile=dtype == "float16")

        with self.assertLogs(logger="absl", level="INFO") as logs:
            results = training.train_and_evaluate(config, one_device())

        self.assertTrue(any(f"Training in {dtype}" in line for line in logs.output))
        losses = scalar_values(os.path.join(self.model_dir, "train"), "epoch_loss")
        self.assertLen(losses, 3)
        self.assertTrue(np.all(np.isfinite(losses)))
        self.assertLess(losses[-1], losses[0])
        self.assertTrue(np.isfinite(results["loss"]))

    def test_resume_in_other_dtype(self):
        first = small_config(self.data_dir, self.model_dir, num_epochs=1, dtype="float16",
                             jit_compile=True)
        training.train_and_evaluate(first, one_device())

        second = small_config(self.data_dir, self.model_dir, num_epochs=2, dtype="bfloat16")
        with self.assertLogs(logger="absl", level="INFO") as logs:
            results = training.train_and_evaluate(second, one_device())

        self.assertEqual(results["epoch"], 2)
        self.assertTrue(any("Resuming from" in line for line in logs.output))
        checkpoint = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(checkpoint.get_tensor(ITERATIONS_KEY), 8)

    def test_float16_on_cpu_without_xla_warns(self):
        config = small_config(self.data_dir, self.model_dir, dtype="float16")

        with self.assertLogs(logger="absl", level="WARNING") as logs:
            jit_compile = training._resolve_jit_compile(config, one_device())

        self.assertFalse(jit_compile)
        self.assertIn("--dtype=bfloat16", "\n".join(logs.output))

    def test_unknown_dtype_is_rejected_before_training(self):
        config = small_config(self.data_dir, self.model_dir, dtype="half")

        with self.assertRaisesRegex(ValueError, r"dtype='half'"):
            training.train_and_evaluate(config, one_device())

        self.assertFalse(os.path.exists(self.model_dir))


class DtypeFlagTest(absltest.TestCase):

    def test_unknown_value_names_choices(self):
        model_dir = os.path.join(self.create_tempdir().full_path, "run")

        result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.train", f"--model_dir={model_dir}",
             "--data_dir=unused", "--dtype=half"],
            capture_output=True, text=True, check=False,
        )

        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--dtype=half", result.stderr)
        self.assertIn("float32|bfloat16|float16", result.stderr)
        self.assertFalse(os.path.exists(model_dir))


class Bfloat16ExportTest(ColorTreeTestCase):

    NUM_TRAIN = 4
    NUM_VALIDATION = 2

    def test_export_serves_float32(self):
        config = small_config(self.data_dir, self.model_dir, num_epochs=1, dtype="bfloat16",
                              export=True)
        training.train_and_evaluate(config, one_device())
        paths = [sample_images.REAL_PHOTOS[index] for index in (0, 1, 3)]
        images = tf.stack([
            preprocessing.preprocess_for_eval(tf.io.read_file(path), 67, 70) for path in paths
        ])

        classify = tf.saved_model.load(config.resolved_export_dir()).signatures[
            serving.CLASSIFY_SIGNATURE_NAME
        ]
        served = classify(images=images)["probabilities"]

        model_config = model_dir_lib.read_model_config(self.model_dir)
        float32_model = model_lib.AlexNet(num_classes=3, image_size=67, dtype="float32")
        bfloat16_model = model_lib.AlexNet(num_classes=3, image_size=67, dtype="mixed_bfloat16")
        for model in (float32_model, bfloat16_model):
            model_dir_lib.restore_model(self.model_dir, model)
        float32_logits = float32_model(images, training=False)
        bfloat16_logits = bfloat16_model(images, training=False)

        self.assertEqual(model_config.get("variant"), "paper")
        self.assertEqual(served.dtype, tf.float32)
        self.assertAllClose(served, tf.nn.softmax(float32_logits), atol=1e-6)
        # bfloat16 keeps 8 significant bits, so each layer's output is rounded
        # by up to 2**-9 (0.2%). Over eight layers the logits drift by an
        # estimated few percent of their range, which 5% allows for.
        tolerance = 0.05 * float(tf.reduce_max(tf.abs(float32_logits)))
        self.assertAllClose(bfloat16_logits, float32_logits, atol=tolerance, rtol=0.0)
        # The bfloat16 model differs from float32 by more than the export
        # does, so the export's match shows that it computes in float32.
        self.assertGreater(
            float(tf.reduce_max(tf.abs(tf.nn.softmax(bfloat16_logits) - served))), 1e-6
        )


if __name__ == "__main__":
    absltest.main()
