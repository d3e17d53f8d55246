"""Tests of the ten-crop preprocessing, the scoring and the evaluation command."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from alexnet_tf import evaluation
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import preprocessing
from alexnet_tf import serving
from alexnet_tf import training
from alexnet_tf.data import build_tfrecords
from alexnet_tf.data import tfrecords
import sample_images

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numbered_pixels(height, width):
    """A uint8 RGB image whose red is the row, green the column and blue 100."""
    image = np.full((height, width, 3), 100, np.uint8)
    image[..., 0] = np.arange(height)[:, np.newaxis]
    image[..., 1] = np.arange(width)[np.newaxis, :]
    return image


def unnormalized_ten_crops(pixels, image_size, resize_size):
    """Runs `ten_crops` on a lossless PNG of `pixels` and adds the mean back."""
    crops = preprocessing.ten_crops(sample_images.encode(pixels, "PNG"), image_size, resize_size)
    return (crops + tf.constant(preprocessing.IMAGENET_RGB_MEAN)).numpy()


class TenCropsTest(tf.test.TestCase, parameterized.TestCase):

    # Boxes as (top, left) of the 8-pixel windows, in the documented order:
    # top left, top right, bottom left, bottom right, centre. The shorter
    # side is already 12, the resize size, so no pixel is resampled. The
    # central 12x12 square starts at column 2 (landscape) or row 2 (portrait).
    @parameterized.named_parameters(
        ("landscape", (12, 16), [(0, 2), (0, 6), (4, 2), (4, 6), (2, 4)]),
        ("portrait", (16, 12), [(2, 0), (2, 4), (6, 0), (6, 4), (4, 2)]),
    )
    def test_crop_boxes(self, shape, boxes):
        pixels = numbered_pixels(*shape)

        crops = unnormalized_ten_crops(pixels, image_size=8, resize_size=12)

        self.assertEqual(crops.shape, (10, 8, 8, 3))
        for index, (top, left) in enumerate(boxes):
            expected = pixels[top : top + 8, left : left + 8].astype(np.float32)
            self.assertAllClose(crops[index], expected, atol=1e-3, msg=f"crop {index}")

    def test_last_five_mirror_the_first_five(self):
        pixels = numbered_pixels(12, 16)

        crops = unnormalized_ten_crops(pixels, image_size=8, resize_size=12)

        for index in range(5):
            self.assertAllEqual(crops[index + 5], crops[index][:, ::-1], msg=f"crop {index}")

    def test_boxes_scale_with_the_resize(self):
        # Shorter side 24 resized to 12: every window is 16 original pixels,
        # shrunk to 8, at twice the offsets of the unscaled case.
        pixels = sample_images.gradient_image(24, 32)
        boxes = [(0, 4), (0, 12), (8, 4), (8, 12), (4, 8)]

        crops = unnormalized_ten_crops(pixels, image_size=8, resize_size=12)

        for index, (top, left) in enumerate(boxes):
            window = pixels[top : top + 16, left : left + 16]
            expected = tf.image.resize(window, (8, 8), antialias=True)
            self.assertAllClose(crops[index], expected, atol=1e-3, msg=f"crop {index}")

    @parameterized.parameters((31, 45), (45, 31), (70, 70), (100, 67), (67, 300))
    def test_centre_crop_equals_preprocess_for_eval(self, height, width):
        image_bytes = sample_images.encode(sample_images.gradient_image(height, width), "PNG")

        crops = preprocessing.ten_crops(image_bytes, 67, 70)

        self.assertAllEqual(crops[4], preprocessing.preprocess_for_eval(image_bytes, 67, 70))

    def test_mean_is_subtracted(self):
        mean_colour = np.full((20, 30, 3), np.round(preprocessing.IMAGENET_RGB_MEAN), np.uint8)
        residual = np.round(preprocessing.IMAGENET_RGB_MEAN) - preprocessing.IMAGENET_RGB_MEAN

        crops = preprocessing.ten_crops(sample_images.encode(mean_colour, "PNG"), 8, 12)

        self.assertAllClose(crops, np.broadcast_to(residual, (10, 8, 8, 3)), atol=1e-4)

    def test_same_inside_dataset_map(self):
        image_bytes = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])
        dataset = tf.data.Dataset.from_tensors(image_bytes).map(
            lambda data: preprocessing.ten_crops(data, 67, 70)
        )

        mapped = next(iter(dataset))

        self.assertEqual(mapped.dtype, tf.float32)
        self.assertEqual(mapped.shape, (10, 67, 67, 3))
        self.assertAllClose(mapped, preprocessing.ten_crops(image_bytes, 67, 70), atol=1e-4)


class ScoringTest(tf.test.TestCase):

    def test_average_crop_probabilities(self):
        # Two images of two crops each, three classes.
        probabilities = tf.constant([
            [0.6, 0.4, 0.0], [0.1, 0.9, 0.0],
            [0.2, 0.2, 0.6], [0.4, 0.0, 0.6],
        ])

        averaged = evaluation.average_crop_probabilities(probabilities, 2)

        self.assertAllClose(averaged, [[0.35, 0.65, 0.0], [0.3, 0.1, 0.6]])

    def test_averaging_decides_top_1(self):
        # The first crop alone predicts class 0; the average predicts class 1.
        probabilities = tf.constant([[0.6, 0.4, 0.0], [0.1, 0.9, 0.0]])

        averaged = evaluation.average_crop_probabilities(probabilities, 2)
        metrics, _ = evaluation.compute_metrics(
            [1], evaluation.top_classes(averaged), ("a", "b", "c")
        )

        self.assertEqual(metrics["top_1_error"], 0.0)

    def test_top_1_and_top_5_error(self):
        # Each row gives class i the probability (i + 1) / 21, so the classes
        # from the most probable are 5, 4, 3, 2, 1, 0. The true classes rank
        # first, third, sixth and second.
        row = np.arange(1, 7) / 21.0
        probabilities = tf.constant(np.tile(row, (4, 1)), tf.float32)
        labels = [5, 3, 0, 4]

        metrics, _ = evaluation.compute_metrics(
            labels, evaluation.top_classes(probabilities), tuple("abcdef")
        )

        self.assertEqual(metrics["num_images"], 4)
        self.assertAlmostEqual(metrics["top_1_error"], 0.75)
        self.assertAlmostEqual(metrics["top_1_accuracy"], 0.25)
        self.assertAlmostEqual(metrics["top_5_error"], 0.25)
        self.assertAlmostEqual(metrics["top_5_accuracy"], 0.75)

    def test_top_classes_of_three_classes(self):
        probabilities = tf.constant([[0.2, 0.5, 0.3]])

        self.assertAllEqual(evaluation.top_classes(probabilities), [[1, 2, 0]])

    def test_confusion_matrix_counts(self):
        labels = [0, 0, 1, 2, 2, 2]
        predicted = [[0], [1], [1], [2], [0], [2]]

        metrics, confusion = evaluation.compute_metrics(labels, predicted, ("a", "b", "c", "d"))

        self.assertAllEqual(
            confusion, [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
        )
        accuracies = [entry["top_1_accuracy"] for entry in metrics["per_class"]]
        self.assertAllClose(accuracies[:3], [0.5, 1.0, 2 / 3])
        self.assertIsNone(accuracies[3])
        self.assertEqual([entry["num_images"] for entry in metrics["per_class"]], [2, 1, 3, 0])
        self.assertEqual(metrics["per_class"][2]["class_name"], "c")

    def test_confusion_image_scales_small_matrices_up(self):
        confusion = np.array([[1, 1, 0], [0, 4, 0], [0, 0, 0]])

        image = evaluation.confusion_image(confusion)

        pixels_per_class = evaluation.CONFUSION_IMAGE_SIDE // 3
        self.assertEqual(image.shape, (3 * pixels_per_class, 3 * pixels_per_class, 1))
        # Rows are divided by their number of images.
        self.assertAllClose(image[0, 0], [0.5])
        self.assertAllClose(image[pixels_per_class, pixels_per_class], [1.0])
        self.assertAllClose(image[-1, -1], [0.0])
        first_block = image[:pixels_per_class, :pixels_per_class]
        self.assertAllClose(first_block, np.full_like(first_block, 0.5))

    def test_confusion_image_of_many_classes_is_capped(self):
        num_classes = evaluation.MAX_CONFUSION_IMAGE_SIDE + 200

        image = evaluation.confusion_image(np.eye(num_classes, dtype=np.int64))

        side = evaluation.MAX_CONFUSION_IMAGE_SIDE
        self.assertEqual(image.shape, (side, side, 1))
        self.assertGreater(image.max(), 0.5)
        self.assertLessEqual(image.max(), 1.0)

    def test_format_lists_worst_classes_of_many(self):
        class_names = tuple(f"class{index:02d}" for index in range(25))
        labels = np.arange(25).repeat(4)
        # Class i gets min(i, 4) of its 4 images right: classes 0 to 3 are worst.
        predicted = [[label if image < label else (label + 1) % 25]
                     for label in range(25) for image in range(4)]
        metrics, _ = evaluation.compute_metrics(labels, predicted, class_names)
        results = dict(metrics, model="run ckpt-1", crops=10, skipped_images=0)

        text = evaluation.format_results(results, "run/evaluation-10crops.json")

        lines = text.splitlines()
        self.assertEqual(lines[0], "| model | top-1 error | top-5 error |")
        self.assertTrue(lines[2].startswith("| run ckpt-1, 10 crops | "), lines[2])
        self.assertIn("run/evaluation-10crops.json", text)
        class_lines = [line for line in lines if line.startswith("  class")]
        self.assertLen(class_lines, evaluation.WORST_CLASSES_SHOWN)
        self.assertTrue(class_lines[0].startswith("  class00"), class_lines[0])
        self.assertNotIn("class24", text)


def undecodable_jpeg():
    """A JPEG whose first and last bytes look whole, so only the decoder can tell."""
    return b"\xff\xd8\xff" + bytes(64) + b"\xff\xd9"


def summary_tags(event_dir):
    """Returns {tag: summary value} of the last event of each tag under `event_dir`."""
    values = {}
    for path in tf.io.gfile.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values[value.tag] = value
    return values


class EndToEndTest(tf.test.TestCase):
    """Evaluates one tiny training run through its checkpoint and its export."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = absltest.get_default_test_tmpdir()
        cls.data_dir = os.path.join(root, "evaluate_test_data")
        cls.model_dir = os.path.join(root, "evaluate_test_run")
        for path in (cls.data_dir, cls.model_dir):
            if tf.io.gfile.exists(path):
                tf.io.gfile.rmtree(path)

        cls.class_names = tuple(sample_images.write_color_tree(cls.data_dir, 4, 3))
        # One file the checks skip, and one only the decoder rejects.
        blue_dir = os.path.join(cls.data_dir, "validation", "blue")
        with open(os.path.join(blue_dir, "empty.jpg"), "wb"):
            pass
        with open(os.path.join(blue_dir, "broken.jpg"), "wb") as file:
            file.write(undecodable_jpeg())
        cls.num_good_images = 9

        config = training.TrainConfig(
            data_dir=cls.data_dir, model_dir=cls.model_dir, global_batch_size=6,
            num_epochs=1, steps_per_epoch=1, lr_drop_epochs=(), image_size=67,
            resize_size=70, initialization="glorot_uniform", seed=3,
        )
        training.train_and_evaluate(config, tf.distribute.OneDeviceStrategy("/cpu:0"))
        cls.export_dir = config.resolved_export_dir()

    def evaluate(self, classifier, num_crops, dataset="folder", data_dir=None, **kwargs):
        source = evaluation.open_validation_source(
            dataset, data_dir or self.data_dir, classifier.class_names, **kwargs
        )
        return evaluation.evaluate(classifier, source, num_crops, batch_size=4)

    def test_checkpoint_and_export_give_same_probabilities(self):
        from_checkpoint = evaluation.load_model_dir(self.model_dir)
        from_export = evaluation.load_saved_model(self.export_dir, 10)
        image_bytes = tf.io.read_file(
            os.path.join(self.data_dir, "validation", "red", "001.png")
        )
        crops = preprocessing.ten_crops(image_bytes, 67, 70)

        expected = from_checkpoint.classify_images(crops)

        self.assertEqual(expected.shape, (10, 3))
        self.assertAllClose(from_export.classify_images(crops), expected, atol=1e-5)
        served = from_export.classify_image_bytes(tf.reshape(image_bytes, [1]))
        self.assertAllClose(served[0], expected[4], atol=1e-5)

    def test_checkpoint_and_export_agree_on_ten_crops(self):
        results, confusion = self.evaluate(evaluation.load_model_dir(self.model_dir), 10)
        export_results, export_confusion = self.evaluate(
            evaluation.load_saved_model(self.export_dir, 10), 10
        )

        self.assertEqual(results["crops"], 10)
        self.assertEqual(results["num_images"], self.num_good_images)
        self.assertEqual(results["skipped_images"], 2)
        self.assertEqual(results["epoch"], 1)
        self.assertEqual(int(confusion.sum()), self.num_good_images)
        self.assertAllEqual(export_confusion, confusion)
        self.assertEqual(export_results["top_1_error"], results["top_1_error"])
        self.assertEqual(export_results["per_class"], results["per_class"])

    def test_one_crop_matches_validation_during_training(self):
        trained = model_dir_lib.read_json(
            os.path.join(self.model_dir, model_dir_lib.EVAL_RESULTS_FILE)
        )

        results, _ = self.evaluate(evaluation.load_model_dir(self.model_dir), 1)
        # Through serving_default, which skips the undecodable file one by one.
        export_results, _ = self.evaluate(evaluation.load_saved_model(self.export_dir, 1), 1)

        self.assertAlmostEqual(results["top_1_accuracy"], trained["top_1_accuracy"], places=5)
        self.assertAlmostEqual(results["top_5_accuracy"], trained["top_5_accuracy"], places=5)
        self.assertEqual(export_results["num_images"], self.num_good_images)
        self.assertEqual(export_results["skipped_images"], 2)
        self.assertEqual(export_results["per_class"], results["per_class"])

    def test_shards_without_info_use_model_classes(self):
        shards_dir = os.path.join(self.create_tempdir().full_path, "shards")
        build_tfrecords.build_tfrecords(
            self.data_dir, shards_dir, num_train_shards=1, num_validation_shards=1,
            num_workers=1,
        )
        classifier = evaluation.load_model_dir(self.model_dir)
        with_info, confusion_with_info = self.evaluate(
            classifier, 10, dataset="tfrecord", data_dir=shards_dir
        )
        os.remove(os.path.join(shards_dir, tfrecords.INFO_FILE))

        results, confusion = self.evaluate(
            classifier, 10, dataset="tfrecord", data_dir=shards_dir, label_offset=0
        )

        # The converter leaves out both bad files.
        self.assertEqual(with_info["num_images"], self.num_good_images)
        self.assertEqual(results["num_images"], self.num_good_images)
        self.assertAllEqual(confusion, confusion_with_info)

    def test_shards_of_other_classes_are_rejected(self):
        data_dir = self.create_tempdir().full_path
        sample_images.write_color_tree(data_dir, 1, 1)
        for split in ("train", "validation"):
            tf.io.gfile.rmtree(os.path.join(data_dir, split, "red"))
        shards_dir = os.path.join(data_dir, "shards")
        build_tfrecords.build_tfrecords(
            data_dir, shards_dir, num_train_shards=1, num_validation_shards=1, num_workers=1
        )

        with self.assertRaisesRegex(ValueError, "has 2 classes and the model 3"):
            evaluation.open_validation_source("tfrecord", shards_dir, self.class_names)

    def test_unknown_class_folder_is_rejected(self):
        data_dir = self.create_tempdir().full_path
        sample_images.write_color_tree(data_dir, 1, 1)
        os.rename(os.path.join(data_dir, "validation", "red"),
                  os.path.join(data_dir, "validation", "yellow"))

        with self.assertRaisesRegex(ValueError, r"not classes of the model.*'yellow'"):
            evaluation.open_validation_source("folder", data_dir, self.class_names)

    def test_missing_data_dir(self):
        missing = os.path.join(self.create_tempdir().full_path, "nothing")

        with self.assertRaisesRegex(FileNotFoundError, "Data directory not found.*nothing"):
            evaluation.open_validation_source("folder", missing, self.class_names)

    def test_export_without_classify_signature(self):
        export_dir = self.create_tempdir().full_path
        module = tf.Module()
        module.serve = tf.function(
            lambda image_bytes: {"probabilities": tf.zeros([tf.size(image_bytes), 3])},
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )
        tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
        with open(os.path.join(export_dir, serving.EXPORT_INFO_FILE), "w") as file:
            json.dump({"class_names": list(self.class_names), "image_size": 67,
                       "resize_size": 70, "model_dir": "runs/old"}, file)

        with self.assertRaisesRegex(ValueError, "no 'classify_images'.*--model_dir=runs/old"):
            evaluation.load_saved_model(export_dir, 10)
        self.assertIsNotNone(evaluation.load_saved_model(export_dir, 1).classify_image_bytes)

    def test_export_without_info_file(self):
        export_dir = self.create_tempdir().full_path
        module = tf.Module()
        module.serve = tf.function(lambda: tf.constant(0.0), input_signature=[])
        tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})

        with self.assertRaisesRegex(FileNotFoundError, "no alexnet_export.json"):
            evaluation.load_saved_model(export_dir, 1)

    def test_model_dir_results_and_summaries(self):
        output_json = os.path.join(self.create_tempdir().full_path, "out", "results.json")
        summary_dir = self.create_tempdir().full_path
        results, confusion = self.evaluate(evaluation.load_model_dir(self.model_dir), 10)

        evaluation.write_results(results, confusion, output_json, summary_dir)

        with open(output_json) as file:
            written = json.load(file)
        self.assertEqual(written["crops"], 10)
        self.assertEqual(written["num_images"], self.num_good_images)
        self.assertAlmostEqual(written["top_1_error"], 1 - written["top_1_accuracy"])
        self.assertEqual([entry["class_name"] for entry in written["per_class"]],
                         list(self.class_names))
        tags = summary_tags(summary_dir)
        self.assertAlmostEqual(
            float(tf.make_ndarray(tags["top_1_error"].tensor)), results["top_1_error"], places=6
        )
        self.assertIn("top_5_error", tags)
        width, height = tf.make_ndarray(tags["confusion_matrix"].tensor)[:2]
        expected_side = 3 * (evaluation.CONFUSION_IMAGE_SIDE // 3)
        self.assertEqual((int(width), int(height)), (expected_side, expected_side))

    def test_default_output_paths(self):
        self.assertEqual(
            evaluation.default_output_paths(10, model_dir="runs/a"),
            ("runs/a/evaluation-10crops.json", "runs/a/eval/10crops"),
        )
        self.assertEqual(
            evaluation.default_output_paths(1, saved_model_dir="runs/a/export/"),
            ("runs/a/export-eval/evaluation-1crop.json", "runs/a/export-eval/1crop"),
        )

    def test_command_with_saved_model(self):
        eval_dir = f"{self.export_dir}-eval"
        if tf.io.gfile.exists(eval_dir):
            tf.io.gfile.rmtree(eval_dir)
        command = [
            sys.executable, "-m", "alexnet_tf.evaluate", f"--saved_model={self.export_dir}",
            f"--data_dir={self.data_dir}", "--crops=10", "--batch_size=4",
        ]

        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)

        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], "| model | top-1 error | top-5 error |")
        self.assertIn("10 crops", lines[2])
        for name in self.class_names:
            self.assertTrue(any(line.startswith(f"  {name} ") for line in lines), name)
        output_json = os.path.join(eval_dir, "evaluation-10crops.json")
        with open(output_json) as file:
            written = json.load(file)
        self.assertEqual(written["saved_model"], os.path.abspath(self.export_dir))
        self.assertIn("confusion_matrix", summary_tags(os.path.join(eval_dir, "10crops")))

        # Running again must leave the results as they are.
        with open(output_json, "a") as file:
            file.write(" ")
        rerun = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)

        self.assertNotEqual(rerun.returncode, 0)
        self.assertIn("exists. Pass --overwrite", rerun.stderr)
        with open(output_json) as file:
            self.assertTrue(file.read().endswith("\n "))


if __name__ == "__main__":
    absltest.main()
