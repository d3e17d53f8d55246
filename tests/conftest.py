"""Test set-up shared by every test module.

The CPU is split into two logical devices before TensorFlow starts, so that
tests can run `MirroredStrategy` with two replicas on a machine without GPUs.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

# absltest reads flags such as --test_tmpdir, which pytest does not parse; their
# defaults apply.
from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
