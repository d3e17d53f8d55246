"""Tests of the SavedModel export, its reload without the package, and predict."""

import json
import os
import shutil
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import preprocessing
from alexnet_tf import serving
from alexnet_tf import training
import sample_images

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter from a folder outside the repository, so that
# only TensorFlow can serve the model.
RELOAD_SCRIPT = """
import json, sys
import tensorflow as tf
export_dir, image_paths = sys.argv[1], sys.argv[2:]
serve = tf.saved_model.load(export_dir).signatures["serving_default"]
images = tf.constant([open(path, "rb").read() for path in image_paths])
outputs = serve(image_bytes=images)
print(json.dumps({
    "imported_alexnet_tf": any(name.startswith("alexnet_tf") for name in sys.modules),
    "probabilities": outputs["probabilities"].numpy().tolist(),
    "top_5_classes": outputs["top_5_classes"].numpy().tolist(),
    "top_5_names": [[name.decode() for name in row] for row in outputs["top_5_names"].numpy()],
}))
"""


class ExportTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = absltest.get_default_test_tmpdir()
        cls.data_dir = os.path.join(root, "export_test_data")
        cls.model_dir = os.path.join(root, "export_test_run")
        for path in (cls.data_dir, cls.model_dir):
            if tf.io.gfile.exists(path):
                tf.io.gfile.rmtree(path)
        cls.class_names = sample_images.write_color_tree(cls.data_dir, 4, 2)
        config = training.TrainConfig(
            data_dir=cls.data_dir, model_dir=cls.model_dir, global_batch_size=6,
            num_epochs=1, steps_per_epoch=2, lr_drop_epochs=(), image_size=67,
            resize_size=70, initialization="glorot_uniform", seed=3,
        )
        training.train_and_evaluate(config, tf.distribute.OneDeviceStrategy("/cpu:0"))
        cls.export_dir = config.resolved_export_dir()
        cls.image_paths = [
            os.path.join(cls.data_dir, "validation", name, "000.jpg") for name in cls.class_names
        ] + [sample_images.REAL_PHOTOS[3]]

    def test_reload_in_process_without_the_package(self):
        result = subprocess.run(
            [sys.executable, "-c", RELOAD_SCRIPT, self.export_dir, *self.image_paths],
            capture_output=True, text=True, cwd=self.create_tempdir().full_path, check=True,
        )
        outputs = json.loads(result.stdout.strip().splitlines()[-1])

        self.assertFalse(outputs["imported_alexnet_tf"])
        probabilities = np.array(outputs["probabilities"])
        self.assertEqual(probabilities.shape, (len(self.image_paths), 3))
        self.assertAllClose(probabilities.sum(axis=1), np.ones(len(self.image_paths)), atol=1e-5)
        # Three classes: the top 5 contains all three, by falling probability.
        self.assertEqual(np.array(outputs["top_5_classes"]).shape, (len(self.image_paths), 3))
        for row, classes, names in zip(probabilities, outputs["top_5_classes"], outputs["top_5_names"]):
            self.assertEqual(classes, list(np.argsort(-row)))
            self.assertEqual(names, [self.class_names[index] for index in classes])

        # The export gives what the checkpoint's model gives on the same pixels.
        model_config = model_dir_lib.read_model_config(self.model_dir)
        model = serving.build_model(model_config)
        model_dir_lib.restore_model(self.model_dir, model)
        images = tf.stack([
            preprocessing.preprocess_for_eval(tf.io.read_file(path), 67, 70)
            for path in self.image_paths
        ])
        expected = tf.nn.softmax(model(images, training=False)).numpy()
        self.assertAllClose(probabilities, expected, atol=1e-5)

    def test_saved_model_cli_lists_the_signature(self):
        cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")

        result = subprocess.run(
            [cli, "show", "--dir", self.export_dir, "--all"],
            capture_output=True, text=True, check=True,
        )

        self.assertIn("serving_default", result.stdout)
        self.assertIn("image_bytes", result.stdout)
        self.assertIn(serving.CLASSIFY_SIGNATURE_NAME, result.stdout)
        for output_name in ("probabilities", "top_5_classes", "top_5_names"):
            self.assertIn(output_name, result.stdout)

    def test_export_command_replaces_own_export_only(self):
        info_path = os.path.join(self.export_dir, serving.EXPORT_INFO_FILE)
        with open(info_path) as file:
            self.assertEqual(json.load(file)["epoch"], 1)

        serving.export_from_checkpoint(self.model_dir, self.export_dir)

        self.assertTrue(tf.saved_model.contains_saved_model(self.export_dir))
        other_model_dir = self.create_tempdir().full_path
        with self.assertRaisesRegex(FileExistsError, "not an export of"):
            serving.check_export_dir(self.export_dir, other_model_dir)

    def test_predict_prints_top_classes(self):
        result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.predict", f"--saved_model={self.export_dir}",
             *self.image_paths[:2]],
            capture_output=True, text=True, cwd=REPO_ROOT, check=True,
        )

        lines = result.stdout.strip().splitlines()
        self.assertLen(lines, 2)
        for line, path in zip(lines, self.image_paths[:2]):
            self.assertTrue(line.startswith(f"{path}: "), line)
            for name in self.class_names:
                self.assertIn(name, line)

    def test_predict_names_missing_file(self):
        result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.predict", f"--saved_model={self.export_dir}",
             "no/such/image.jpg"],
            capture_output=True, text=True, cwd=REPO_ROOT,
        )

        self.assertNotEqual(result.returncode, 0)
        self.assertIn("no/such/image.jpg", result.stderr)

    def test_predict_names_undecodable_file_and_predicts_others(self):
        not_an_image = self.create_tempfile("notes.png", content="plain text").full_path

        result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.predict", f"--saved_model={self.export_dir}",
             self.image_paths[0], not_an_image],
            capture_output=True, text=True, cwd=REPO_ROOT,
        )

        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"no prediction for: {not_an_image}", result.stderr)
        self.assertTrue(result.stdout.startswith(f"{self.image_paths[0]}: "), result.stdout)

    def test_copied_model_dir_recognizes_its_export(self):
        copy_dir = os.path.join(self.create_tempdir().full_path, "copy")
        shutil.copytree(self.model_dir, copy_dir)

        serving.export_from_checkpoint(copy_dir, os.path.join(copy_dir, "export"))

        with open(os.path.join(copy_dir, "export", serving.EXPORT_INFO_FILE)) as file:
            self.assertEqual(json.load(file)["model_dir"], os.path.abspath(copy_dir))

    def test_missing_checkpoint_lists_available_ones(self):
        missing = os.path.join(self.model_dir, "checkpoints", "ckpt-99")

        with self.assertRaisesRegex(FileNotFoundError, "ckpt-99.*Available.*ckpt-1"):
            serving.export_from_checkpoint(
                self.model_dir, os.path.join(self.create_tempdir().full_path, "out"), missing
            )

    def test_export_without_checkpoint(self):
        with self.assertRaisesRegex(FileNotFoundError, "model_config.json"):
            serving.export_from_checkpoint(
                self.create_tempdir().full_path, os.path.join(self.create_tempdir().full_path, "out")
            )


if __name__ == "__main__":
    absltest.main()
