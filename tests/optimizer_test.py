"""Tests of SGD with AlexNet's coupled weight decay."""

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import optimizer as optimizer_lib


class MomentumWithWeightDecayTest(tf.test.TestCase):

    def test_two_steps_match_the_paper_update(self):
        learning_rate, momentum, decay = 0.1, 0.9, 0.01
        kernel = keras.Variable(np.array([[1.0, -2.0]], np.float32))
        bias = keras.Variable(np.array([0.5], np.float32))
        optimizer = optimizer_lib.MomentumWithWeightDecay(
            learning_rate=learning_rate, momentum=momentum, l2_weight_decay=decay
        )
        gradients = [
            (np.array([[0.2, 0.4]], np.float32), np.array([1.0], np.float32)),
            (np.array([[-0.1, 0.3]], np.float32), np.array([-2.0], np.float32)),
        ]

        w, b = kernel.numpy().astype(np.float64), bias.numpy().astype(np.float64)
        v_w, v_b = np.zeros_like(w), np.zeros_like(b)
        for kernel_gradient, bias_gradient in gradients:
            optimizer.apply_gradients([(kernel_gradient, kernel), (bias_gradient, bias)])
            # v <- m v - wd lr w - lr grad; w <- w + v. Biases do not decay.
            v_w = momentum * v_w - decay * learning_rate * w - learning_rate * kernel_gradient
            w = w + v_w
            v_b = momentum * v_b - learning_rate * bias_gradient
            b = b + v_b

            self.assertAllClose(kernel.numpy(), w, rtol=1e-6)
            self.assertAllClose(bias.numpy(), b, rtol=1e-6)

    def test_config_round_trip(self):
        optimizer = optimizer_lib.MomentumWithWeightDecay(0.05, momentum=0.8, l2_weight_decay=1e-3)

        restored = optimizer_lib.MomentumWithWeightDecay.from_config(optimizer.get_config())

        self.assertEqual(restored.l2_weight_decay, 1e-3)
        self.assertEqual(restored.momentum, 0.8)

    def test_rejects_decoupled_weight_decay(self):
        with self.assertRaisesRegex(ValueError, "weight_decay=0.1"):
            optimizer_lib.MomentumWithWeightDecay(weight_decay=0.1)

    def test_rejects_negative_decay(self):
        with self.assertRaisesRegex(ValueError, "l2_weight_decay=-1"):
            optimizer_lib.MomentumWithWeightDecay(l2_weight_decay=-1)


if __name__ == "__main__":
    absltest.main()
