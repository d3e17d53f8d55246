"""Tests of figures 3 and 4 of Krizhevsky et al. (2012), their TensorBoard callback and command."""

import os
import shutil
import subprocess
import sys

from absl.testing import absltest
import keras
import numpy as np
from PIL import Image
import tensorflow as tf

from alexnet_tf import callbacks
from alexnet_tf import distribution
from alexnet_tf import figures
from alexnet_tf import kernel_figure
from alexnet_tf import model as model_lib
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import neighbours_figure
from alexnet_tf.data import image_folder
import sample_images

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMAGE_SIZE = 67
RESIZE_SIZE = 70
WHITE = (255, 255, 255)
RED_BAR = (225, 80, 70)

# Training images of the tiny folder tree, by class: real photos and one
# generated gradient, so that no two images are alike.
TRAIN_IMAGES = {
    "animal": ("chelsea.png", "camera.png"),
    "plant": ("flower.jpg", "china.jpg"),
    "sign": ("logo.png", "gradient.png"),
}


def tiny_alexnet(num_classes=3, seed=1):
    # initialization="paper" sets fc7's biases to 1, which makes its features
    # nearly equal for all images in an untrained model; Glorot weights do not.
    return model_lib.AlexNet(
        num_classes=num_classes, image_size=IMAGE_SIZE, initialization="glorot_uniform", seed=seed
    )


def ramp_kernel(channel):
    """An 11x11x3 kernel whose `channel` rises from 0 to 1 left to right; 0 elsewhere."""
    kernel = np.zeros([11, 11, 3], np.float32)
    kernel[:, :, channel] = np.linspace(0.0, 1.0, 11)[None, :]
    return kernel


def write_tree(root):
    """Writes a train/validation folder tree of real photos; returns the class names."""
    sources = {name: sample_images.sklearn_path(name) for name in ("flower.jpg", "china.jpg")}
    sources.update({name: sample_images.skimage_path(name)
                    for name in ("chelsea.png", "camera.png", "logo.png")})
    for class_name, file_names in TRAIN_IMAGES.items():
        for split in ("train", "validation"):
            os.makedirs(os.path.join(root, split, class_name))
        for file_name in file_names:
            destination = os.path.join(root, "train", class_name, file_name)
            if file_name == "gradient.png":
                Image.fromarray(sample_images.gradient_image(90, 120)).save(destination)
            else:
                shutil.copy(sources[file_name], destination)
        # Validation: the first training image, mirrored.
        with Image.open(os.path.join(root, "train", class_name, file_names[0])) as image:
            mirrored = image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            mirrored.save(os.path.join(root, "validation", class_name, "mirrored.png"))
    return sorted(TRAIN_IMAGES)


def write_model_dir(model_dir, model, class_names):
    """Saves what a training run leaves for the figures: model config and a checkpoint."""
    model_dir_lib.save_or_check_model_config(model_dir, {
        "class_names": class_names, "image_size": IMAGE_SIZE, "resize_size": RESIZE_SIZE,
        "dropout_rate": 0.5,
    })
    checkpoint = tf.train.Checkpoint(model=model, epoch=tf.Variable(1, dtype=tf.int64))
    manager = tf.train.CheckpointManager(checkpoint, model_dir_lib.checkpoint_dir(model_dir), 1)
    manager.save(checkpoint_number=1)


def read_png(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def contains_color(pixels, color):
    return bool(np.any(np.all(pixels == np.array(color, np.uint8), axis=-1)))


class KernelGridTest(tf.test.TestCase):

    def test_size_follows_count_scale_and_gaps(self):
        kernels = np.random.default_rng(0).normal(size=[11, 11, 3, 96])

        grid = kernel_figure.kernel_grid(kernels, groups=2, columns=16, scale=3, gap=2,
                                         tower_gap=5)

        # Two blocks of 48 = 3 rows x 16 columns of 33-pixel cells.
        self.assertEqual(grid.shape, (2 * (3 * 33 + 4 * 2) + 5, 16 * 33 + 17 * 2, 3))
        self.assertEqual(grid.dtype, np.uint8)

    def test_size_without_groups(self):
        kernels = np.random.default_rng(0).normal(size=[11, 11, 3, 64])

        grid = kernel_figure.kernel_grid(kernels, columns=16, scale=4, gap=1)

        self.assertEqual(grid.shape, (4 * 44 + 5, 16 * 44 + 17, 3))

    def test_short_last_row_and_few_kernels(self):
        kernels = np.random.default_rng(0).normal(size=[5, 5, 3, 10])

        wide = kernel_figure.kernel_grid(kernels, columns=16, scale=1, gap=1)
        rows = kernel_figure.kernel_grid(kernels, columns=4, scale=1, gap=1)

        self.assertEqual(wide.shape, (5 + 2, 10 * 5 + 11, 3))  # One row of 10.
        self.assertEqual(rows.shape, (3 * 5 + 4, 4 * 5 + 5, 3))  # 4 + 4 + 2.
        self.assertAllEqual(rows[13:18, 13:24], np.full([5, 11, 3], 255))  # Empty cells 11, 12.

    def test_random_kernels_are_not_blank(self):
        kernels = np.random.default_rng(0).normal(size=[11, 11, 3, 96])

        grid = kernel_figure.kernel_grid(kernels, groups=2)

        cell = grid[1:45, 1:45]  # Kernel 0 at scale 4.
        self.assertGreater(cell.std(), 20)
        self.assertEqual(cell.min(), 0)
        self.assertEqual(cell.max(), 255)

    def test_kernels_placed_in_documented_order(self):
        # Under one global range, kernel i is the flat grey level i / 95 * 255.
        kernels = np.broadcast_to(np.arange(96, dtype=np.float32), [3, 3, 3, 96])

        grid = kernel_figure.kernel_grid(kernels, groups=2, columns=16, scale=2, gap=1,
                                         tower_gap=4, contrast="global")

        block_height = 3 * 6 + 4
        for index in range(96):
            block, position = divmod(index, 48)
            row, column = divmod(position, 16)
            top = block * (block_height + 4) + 1 + row * 7
            left = 1 + column * 7
            expected = round(index / 95 * 255)
            self.assertAllEqual(grid[top:top + 6, left:left + 6],
                                np.full([6, 6, 3], expected), msg=f"kernel {index}")
        tower_gap_rows = grid[block_height:block_height + 4]
        self.assertAllEqual(tower_gap_rows, np.full([4, grid.shape[1], 3], 255))

    def test_per_kernel_contrast_stretches_weak_kernels(self):
        weak = ramp_kernel(0) * 1e-3
        strong = ramp_kernel(0)
        kernels = np.stack([weak, strong], axis=-1)

        per_kernel = kernel_figure.scale_kernels(kernels, "per_kernel")
        global_range = kernel_figure.scale_kernels(kernels, "global")

        self.assertEqual(per_kernel[0].max(), 255)
        self.assertEqual(per_kernel[1].max(), 255)
        self.assertLessEqual(global_range[0].max(), 1)
        self.assertEqual(global_range[1].max(), 255)

    def test_constant_kernel_is_grey(self):
        kernels = np.stack([np.full([3, 3, 3], 0.5), ramp_kernel(1)[:3, :3]], axis=-1)

        scaled = kernel_figure.scale_kernels(kernels)

        self.assertAllEqual(scaled[0], np.full([3, 3, 3], 128))
        self.assertEqual(scaled[1].max(), 255)

    def test_bad_arguments_rejected(self):
        kernels = np.zeros([11, 11, 3, 96])

        with self.assertRaisesRegex(ValueError, "groups=5"):
            kernel_figure.kernel_grid(kernels, groups=5)
        with self.assertRaisesRegex(ValueError, r"\(11, 11, 1, 96\)"):
            kernel_figure.kernel_grid(np.zeros([11, 11, 1, 96]))
        with self.assertRaisesRegex(ValueError, "scale=0"):
            kernel_figure.kernel_grid(kernels, scale=0)
        with self.assertRaisesRegex(ValueError, "'local'"):
            kernel_figure.kernel_grid(kernels, contrast="local")


class ModelKernelsTest(tf.test.TestCase):

    def test_towers_of_alexnet_one_above_other(self):
        model = tiny_alexnet()
        tower_1 = np.repeat(ramp_kernel(0)[..., None], 48, axis=-1)  # Red ramps.
        tower_2 = np.repeat(ramp_kernel(1)[..., None], 48, axis=-1)  # Green ramps.
        model.get_layer("conv1").kernel.assign(np.concatenate([tower_1, tower_2], axis=-1))

        grid = kernel_figure.conv1_kernel_grid(model, scale=1, gap=1, tower_gap=4)

        block_height = 3 * 11 + 4
        self.assertEqual(grid.shape, (2 * block_height + 4, 16 * 11 + 17, 3))
        top = grid[:block_height]
        bottom = grid[block_height + 4:]
        kernel_pixels = np.any(top != 255, axis=-1)
        self.assertEqual(top[..., 0][kernel_pixels].max(), 255)
        self.assertEqual(top[..., 1][kernel_pixels].max(), 0)
        kernel_pixels = np.any(bottom != 255, axis=-1)
        self.assertEqual(bottom[..., 1][kernel_pixels].max(), 255)
        self.assertEqual(bottom[..., 0][kernel_pixels].max(), 0)

    def test_model_without_towers_gives_one_block(self):
        images = keras.Input([35, 35, 3])
        features = keras.layers.Conv2D(64, 11, strides=4, name="conv1")(images)
        features = keras.layers.Conv2D(8, 3, name="conv2")(features)
        model = keras.Model(images, features)

        kernels, groups = kernel_figure.conv1_kernels(model)
        grid = kernel_figure.conv1_kernel_grid(model, scale=1)

        self.assertEqual(kernels.shape, (11, 11, 3, 64))
        self.assertEqual(groups, 1)
        self.assertEqual(grid.shape, (4 * 11 + 5, 16 * 11 + 17, 3))

    def test_model_without_conv1_rejected(self):
        images = keras.Input([8, 8, 3])
        model = keras.Model(images, keras.layers.Conv2D(4, 3, name="stem")(images))

        with self.assertRaisesRegex(ValueError, "no layer named 'conv1'.*stem"):
            kernel_figure.conv1_kernels(model)


class ConvKernelsCallbackTest(tf.test.TestCase):

    def write_and_read(self, model):
        log_dir = self.create_tempdir().full_path
        writer = tf.summary.create_file_writer(log_dir)
        callback = callbacks.ConvKernels(writer, scale=2)
        callback.set_model(model)

        callback.on_train_begin()
        callback.on_epoch_end(0)
        writer.close()

        images = []
        for path in tf.io.gfile.glob(os.path.join(log_dir, "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag == "conv1_kernels":
                        images.append(tf.io.decode_png(value.tensor.string_val[2]).numpy())
        return images

    def test_writes_kernel_image_twice(self):
        model = tiny_alexnet()
        model.compile(optimizer="sgd", loss="mse")

        images = self.write_and_read(model)

        self.assertLen(images, 2)
        self.assertEqual(images[0].shape, (144, 369, 3))
        self.assertAllEqual(images[0], kernel_figure.conv1_kernel_grid(model, scale=2))

    def test_two_replicas(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = tiny_alexnet()
            model.compile(optimizer="sgd", loss="mse")

        images = self.write_and_read(model)

        self.assertLen(images, 2)
        self.assertGreater(images[0].std(), 20)

    def test_model_without_conv1_writes_nothing(self):
        images = keras.Input([8, 8, 3])
        model = keras.Model(images, keras.layers.Conv2D(4, 3, name="stem")(images))
        model.compile(optimizer="sgd", loss="mse")

        with self.assertLogs(level="WARNING") as logs:
            images = self.write_and_read(model)

        self.assertEmpty(images)
        warnings = [line for line in logs.output if "No conv1_kernels image" in line]
        self.assertLen(warnings, 1)  # Once, not at every epoch.


class NeighboursTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = absltest.get_default_test_tmpdir()
        cls.data_dir = os.path.join(root, "figures_test_data")
        cls.model_dir = os.path.join(root, "figures_test_run")
        for path in (cls.data_dir, cls.model_dir):
            if tf.io.gfile.exists(path):
                tf.io.gfile.rmtree(path)
        cls.class_names = write_tree(cls.data_dir)
        cls.model = tiny_alexnet()
        write_model_dir(cls.model_dir, cls.model, cls.class_names)
        cls.train_source, cls.validation_source = (
            image_folder.open_folder(cls.data_dir, split)
            for split in (image_folder.TRAIN_SPLIT, image_folder.VALIDATION_SPLIT)
        )

    def train_dataset(self):
        return neighbours_figure.read_split(self.train_source, IMAGE_SIZE, RESIZE_SIZE, 4)

    def train_path(self, class_name, file_name):
        return os.path.join(self.data_dir, "train", class_name, file_name)

    def test_training_image_is_its_own_nearest(self):
        query = self.train_path("animal", "chelsea.png")
        queries = neighbours_figure.read_image_files([query], IMAGE_SIZE, RESIZE_SIZE, 4)

        figure, results = neighbours_figure.draw_figure(
            self.model, self.class_names, queries, self.train_dataset(), num_neighbours=3,
            thumbnail_size=64,
        )

        neighbours = results[0].neighbours
        self.assertEqual(neighbours.names[0], query)
        # 0 up to float32 rounding, which differs between the query's batch of
        # 1 and the training batches of 4.
        self.assertLess(neighbours.distances[0], 1e-3 * neighbours.distances[1])
        self.assertGreater(neighbours.distances[1], 0)
        self.assertLen(neighbours.names, 3)
        self.assertLen(set(neighbours.names), 3)
        self.assertTrue(np.all(np.diff(neighbours.distances) >= 0))
        self.assertAllEqual(neighbours.thumbnails[0], results[0].thumbnail)

        pixels = np.asarray(figure)
        self.assertEqual(figure.size, (6 * 64 + 7 * 4, 64 + 14 + 4 + 4))
        self.assertGreater(pixels.std(), 20)
        self.assertFalse(contains_color(pixels, RED_BAR))  # Unknown class: no red bar.

    def test_validation_queries_show_true_class(self):
        queries = neighbours_figure.read_split(
            self.validation_source, IMAGE_SIZE, RESIZE_SIZE, 2, max_images=2, seed=0
        )

        figure, results = neighbours_figure.draw_figure(
            self.model, self.class_names, queries, self.train_dataset(), num_neighbours=6,
            thumbnail_size=64,
        )

        self.assertLen(results, 2)
        self.assertEqual(figure.size, (9 * 64 + 10 * 4, 2 * (64 + 14 + 4) + 4))
        for result in results:
            self.assertBetween(result.label, 0, 2)
            self.assertLen(result.top_classes, 3)  # Three classes: all in the top 5.
            self.assertAllClose(result.top_probabilities.sum(), 1.0, atol=1e-5)
            self.assertTrue(np.all(np.diff(result.top_probabilities) <= 0))
            self.assertLen(result.neighbours.names, 6)
        # With three classes the true class is always among the bars, drawn red.
        self.assertTrue(contains_color(np.asarray(figure), RED_BAR))

    def test_fewer_training_images_than_neighbours(self):
        queries = neighbours_figure.read_image_files(
            [self.train_path("sign", "logo.png")], IMAGE_SIZE, RESIZE_SIZE, 4
        )
        train_dataset = neighbours_figure.read_split(
            self.train_source, IMAGE_SIZE, RESIZE_SIZE, 4, max_images=2
        )

        with self.assertLogs(level="WARNING"):
            figure, results = neighbours_figure.draw_figure(
                self.model, self.class_names, queries, train_dataset, num_neighbours=4,
                thumbnail_size=64,
            )

        self.assertLen(results[0].neighbours.names, 2)
        self.assertEqual(figure.size, (5 * 64 + 6 * 4, 64 + 14 + 4 + 4))

    def test_merged_keeps_nearest_in_order(self):
        thumbnails = np.arange(4, dtype=np.uint8).reshape([4, 1, 1, 1]) * np.ones([1, 1, 1, 3],
                                                                                  np.uint8)
        first = neighbours_figure.Neighbours(
            np.array([0.5, 2.0]), np.array([0, 1]), ["a", "b"], thumbnails[:2])
        second = neighbours_figure.Neighbours(
            np.array([1.0, 0.5]), np.array([2, 0]), ["c", "d"], thumbnails[2:])

        merged = first.merged(second, 3)

        self.assertEqual(merged.names, ["a", "d", "c"])  # Ties keep the earlier one first.
        self.assertAllEqual(merged.distances, [0.5, 0.5, 1.0])
        self.assertAllEqual(merged.labels, [0, 0, 2])
        self.assertAllEqual(merged.thumbnails[:, 0, 0, 0], [0, 3, 2])

    def test_missing_and_undecodable_files_named(self):
        not_an_image = self.create_tempfile("notes.png", content="plain text").full_path

        with self.assertRaisesRegex(FileNotFoundError, "no/such.jpg"):
            neighbours_figure.read_image_files(["no/such.jpg"], IMAGE_SIZE, RESIZE_SIZE, 4)
        with self.assertRaisesRegex(ValueError, "notes.png"):
            neighbours_figure.read_image_files([not_an_image], IMAGE_SIZE, RESIZE_SIZE, 4)

    def test_model_without_fc7_rejected(self):
        images = keras.Input([8, 8, 3])
        model = keras.Model(images, keras.layers.Dense(2, name="fc8")(images))

        with self.assertRaisesRegex(ValueError, "no layer named 'fc7'"):
            neighbours_figure.feature_model(model)

    def test_load_model_restores_weights(self):
        model, model_config = figures.load_model(self.model_dir)

        self.assertEqual(model_config["class_names"], self.class_names)
        for layer_name in ("conv1", "fc7", "fc8"):
            self.assertAllEqual(model.get_layer(layer_name).kernel,
                                self.model.get_layer(layer_name).kernel)


class OutputTest(tf.test.TestCase):

    def test_existing_output_kept(self):
        path = self.create_tempfile("figure.png", content="earlier").full_path

        with self.assertRaisesRegex(FileExistsError, "--overwrite"):
            figures.save_png(np.zeros([2, 2, 3], np.uint8), path)

        with open(path) as file:
            self.assertEqual(file.read(), "earlier")

    def test_overwrite_replaces_output(self):
        path = self.create_tempfile("figure.png", content="earlier").full_path

        figures.save_png(np.full([2, 3, 3], 7, np.uint8), path, overwrite=True)

        self.assertAllEqual(read_png(path), np.full([2, 3, 3], 7))

    def test_new_folder_created(self):
        path = os.path.join(self.create_tempdir().full_path, "new", "figure.png")

        figures.save_png(Image.new("RGB", (4, 2)), path)

        self.assertEqual(read_png(path).shape, (2, 4, 3))

    def test_bad_output_paths_rejected(self):
        folder = self.create_tempdir("figure.png").full_path

        with self.assertRaisesRegex(ValueError, "must be a .png file"):
            figures.check_output_path("figure.jpg")
        with self.assertRaisesRegex(FileExistsError, "is a folder"):
            figures.check_output_path(folder, overwrite=True)


class CommandTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = absltest.get_default_test_tmpdir()
        cls.data_dir = os.path.join(root, "figures_command_data")
        cls.model_dir = os.path.join(root, "figures_command_run")
        for path in (cls.data_dir, cls.model_dir):
            if tf.io.gfile.exists(path):
                tf.io.gfile.rmtree(path)
        class_names = write_tree(cls.data_dir)
        write_model_dir(cls.model_dir, tiny_alexnet(), class_names)

    def run_figures(self, *arguments):
        return subprocess.run(
            [sys.executable, "-m", "alexnet_tf.figures", f"--model_dir={self.model_dir}",
             *arguments],
            capture_output=True, text=True, cwd=REPO_ROOT,
        )

    def test_neighbours_command_writes_png(self):
        output = os.path.join(self.create_tempdir().full_path, "neighbours.png")

        result = self.run_figures(
            "--figure=neighbours", f"--output={output}", f"--data_dir={self.data_dir}",
            "--num_images=2", "--num_neighbours=2", "--thumbnail_size=64",
        )

        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"Wrote {output}", result.stdout)
        self.assertEqual(read_png(output).shape, (2 * (64 + 14 + 4) + 4, 5 * 64 + 6 * 4, 3))
        self.assertIn("nearest", result.stdout)

    def test_command_rejects_existing_output(self):
        output = self.create_tempfile("kernels.png", content="earlier").full_path

        refused = self.run_figures("--figure=kernels", f"--output={output}")
        with open(output) as file:
            kept = file.read()
        replaced = self.run_figures("--figure=kernels", f"--output={output}", "--overwrite",
                                    "--kernel_scale=1")

        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("--overwrite", refused.stderr)
        self.assertEqual(kept, "earlier")
        self.assertEqual(replaced.returncode, 0, replaced.stderr)
        self.assertEqual(read_png(output).shape, (2 * (3 * 11 + 4) + 4, 16 * 11 + 17, 3))


if __name__ == "__main__":
    tf.test.main()
