"""Tests of the model variant through the flags, training, export and converted weights."""

import json
import os

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from alexnet_tf import convert
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import preprocessing
from alexnet_tf import serving
from alexnet_tf import train
from alexnet_tf import training
import sample_images

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS


def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def small_config(data_dir, model_dir, **overrides):
    """A run of one step per epoch on 67-pixel images."""
    settings = dict(
        data_dir=data_dir,
        model_dir=model_dir,
        global_batch_size=4,
        num_epochs=1,
        steps_per_epoch=1,
        learning_rate=0.001,
        lr_drop_epochs=(),
        image_size=67,
        resize_size=70,
        seed=1,
        export=False,
    )
    settings.update(overrides)
    return training.TrainConfig(**settings)


class VariantTrainingTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.data_dir = self.create_tempdir().full_path
        self.class_names = sample_images.write_color_tree(
            self.data_dir, num_train=2, num_validation=1
        )
        self.model_dir = os.path.join(self.create_tempdir().full_path, "run")

    def test_caffe_run_exports_caffe_model(self):
        config = small_config(self.data_dir, self.model_dir, variant="caffe", export=True)

        training.train_and_evaluate(config, one_device())

        model_config = model_dir_lib.read_model_config(self.model_dir)
        self.assertEqual(model_config["variant"], "caffe")
        with open(os.path.join(config.resolved_export_dir(), serving.EXPORT_INFO_FILE)) as file:
            self.assertEqual(json.load(file)["variant"], "caffe")

        model = serving.build_model(model_config)
        model_dir_lib.restore_model(self.model_dir, model)
        self.assertEqual(model.get_layer("lrn1").bias, 1.0)
        # The paper's LRN gives other outputs from the same weights, so equal
        # outputs show that the export runs Caffe's LRN too.
        image_path = os.path.join(self.data_dir, "validation", "red", "000.jpg")
        image_bytes = tf.io.read_file(image_path)
        serve = tf.saved_model.load(config.resolved_export_dir()).signatures["serving_default"]
        outputs = serve(image_bytes=tf.reshape(image_bytes, [1]))
        images = preprocessing.preprocess_for_eval(image_bytes, 67, 70)[tf.newaxis]
        expected = tf.nn.softmax(model(images, training=False))
        self.assertAllClose(outputs["probabilities"], expected, atol=1e-6)

    def test_other_variant_rejected_on_resume(self):
        training.train_and_evaluate(
            small_config(self.data_dir, self.model_dir, variant="paper_single_tower"),
            one_device(),
        )

        with self.assertRaisesRegex(
            ValueError, "contains a run with variant='paper_single_tower', but this run has "
            "variant='paper'"
        ):
            training.train_and_evaluate(
                small_config(self.data_dir, self.model_dir, num_epochs=2), one_device()
            )

    def test_too_small_image_rejected_before_writing(self):
        config = small_config(self.data_dir, self.model_dir, variant="torchvision", image_size=62)

        with self.assertRaisesRegex(ValueError, "image_size >= 63 for variant='torchvision'"):
            training.train_and_evaluate(config, one_device())
        self.assertFalse(os.path.exists(self.model_dir))

    def test_training_continues_from_converted_weights(self):
        rng = np.random.default_rng(0)
        arrays = {
            key: rng.normal(0, 0.01, shape).astype(np.float32)
            for key, shape in _torchvision_shapes(len(self.class_names)).items()
        }
        weights_path = os.path.join(self.create_tempdir().full_path, "alexnet.npz")
        np.savez(weights_path, **arrays)
        names_path = os.path.join(self.create_tempdir().full_path, "classes.txt")
        with open(names_path, "w") as file:
            file.write("\n".join(self.class_names))
        convert.convert(weights_path, "torchvision", self.model_dir, class_names_file=names_path)
        # No image_size: the variant's 224, which the converted directory has too.
        config = small_config(
            self.data_dir, self.model_dir, variant="torchvision", image_size=None,
            resize_size=256, global_batch_size=2,
        )

        results = training.train_and_evaluate(config, one_device())

        self.assertEqual(results["epoch"], 1)
        self.assertTrue(np.isfinite(results["loss"]))
        checkpoint = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(
            checkpoint.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"), 1
        )
        with open(os.path.join(self.model_dir, "run_config-epoch0.json")) as file:
            self.assertEqual(json.load(file)["image_size"], 224)
        model_config = model_dir_lib.read_model_config(self.model_dir)
        self.assertEqual(model_config["image_size"], 224)
        self.assertEqual(model_config["variant"], "torchvision")


def _torchvision_shapes(num_classes):
    """Returns torchvision's state dict keys and their shapes."""
    shapes = {
        "conv1": (64, 3, 11, 11), "conv2": (192, 64, 5, 5), "conv3": (384, 192, 3, 3),
        "conv4": (256, 384, 3, 3), "conv5": (256, 256, 3, 3), "fc6": (4096, 9216),
        "fc7": (4096, 4096), "fc8": (num_classes, 4096),
    }
    keys_and_shapes = {}
    for layer_name, shape in shapes.items():
        keys_and_shapes[convert.weight_key("torchvision", layer_name, "weight")] = shape
        keys_and_shapes[convert.weight_key("torchvision", layer_name, "bias")] = shape[:1]
    return keys_and_shapes


class ModelConfigTest(tf.test.TestCase):

    def test_config_without_variant_is_paper(self):
        model_dir = self.create_tempdir().full_path
        model_dir_lib.write_json(
            os.path.join(model_dir, model_dir_lib.MODEL_CONFIG_FILE),
            {"class_names": ["a", "b"], "image_size": 67, "resize_size": 70},
        )

        model_dir_lib.save_or_check_model_config(
            model_dir, {"class_names": ["a", "b"], "image_size": 67, "variant": "paper"}
        )
        with self.assertRaisesRegex(ValueError, "variant='paper', but this run has variant='caffe'"):
            model_dir_lib.save_or_check_model_config(
                model_dir, {"class_names": ["a", "b"], "image_size": 67, "variant": "caffe"}
            )

    def test_build_model_without_variant_is_paper(self):
        model = serving.build_model({"class_names": ["a", "b"], "image_size": 67})

        self.assertEqual(model.get_layer("conv2").groups, 2)
        self.assertEqual(model.get_layer("lrn1").bias, 2.0)


class FlagTest(tf.test.TestCase, parameterized.TestCase):

    def parse(self, *args):
        """Parses train's flags from `args` and returns the resulting TrainConfig.

        Only train's own flags are parsed, so that the required flags that other
        test modules' entry points define do not fail the parse.
        """
        train_flags = flags.FlagValues()
        for flag in FLAGS.get_key_flags_for_module(train):
            train_flags[flag.name] = flag
        train_flags(["train", "--model_dir=unused", *args])
        return train.config_from_flags()

    @flagsaver.flagsaver
    def test_variant_flag_defaults(self):
        config = self.parse("--variant=torchvision")

        self.assertEqual(config.variant, "torchvision")
        self.assertIsNone(config.image_size)
        self.assertIsNone(config.initialization)

    @flagsaver.flagsaver
    def test_too_small_image_size_flag_rejected(self):
        with self.assertRaises(flags.IllegalFlagValueError):
            self.parse("--image_size=62")

    @flagsaver.flagsaver
    def test_resize_smaller_than_image_rejected(self):
        with self.assertRaises(flags.IllegalFlagValueError):
            self.parse("--image_size=227", "--resize_size=200")

    @flagsaver.flagsaver
    def test_unknown_variant_rejected(self):
        with self.assertRaises(flags.IllegalFlagValueError):
            self.parse("--variant=vgg")

    @parameterized.named_parameters(
        ("paper_single_tower", "paper_single_tower", 128, 5e-4, (30, 60, 80), 227, 0.1),
        ("caffe", "caffe", 256, 5e-4, (20, 40, 60, 80), 227, 0.0),
        ("torchvision", "torchvision", 256, 1e-4, (30, 60), 224, 0.0),
    )
    @flagsaver.flagsaver
    def test_flagfile(self, variant, batch_size, weight_decay, lr_drop_epochs, image_size,
                      pca_stddev):
        current_dir = os.getcwd()
        os.chdir(REPO_ROOT)  # Flagfiles name the files they include from the repository root.
        try:
            config = self.parse(f"--flagfile=flags/{variant}.cfg")
        finally:
            os.chdir(current_dir)

        self.assertEqual(config.variant, variant)
        self.assertEqual(config.global_batch_size, batch_size)
        self.assertEqual(config.learning_rate, 0.01)
        self.assertEqual(config.momentum, 0.9)
        self.assertEqual(config.weight_decay, weight_decay)
        self.assertEqual(config.lr_drop_epochs, lr_drop_epochs)
        self.assertEqual(config.num_epochs, 90)
        self.assertEqual(config.image_size, image_size)
        self.assertEqual(config.resize_size, 256)
        self.assertEqual(config.pca_stddev, pca_stddev)


if __name__ == "__main__":
    absltest.main()
