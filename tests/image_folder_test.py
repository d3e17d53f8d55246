"""Tests of listing an ImageNet-style folder tree."""

import os

from absl.testing import absltest
import tensorflow as tf

from alexnet_tf import image_folder


def make_tree(root, files):
    """Creates empty files at the given paths under `root`."""
    for relative_path in files:
        path = os.path.join(root, relative_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(b"\xff\xd8\xff")


class ListImagesTest(tf.test.TestCase):

    def test_labels_follow_sorted_class_names(self):
        root = self.create_tempdir().full_path
        make_tree(root, ["train/zebra/1.jpg", "train/ant/2.JPEG", "train/ant/1.png",
                         "train/moth/a.jpeg"])

        images = image_folder.list_images(root, image_folder.TRAIN_SPLIT)

        self.assertEqual(images.class_names, ("ant", "moth", "zebra"))
        self.assertEqual([os.path.relpath(p, root) for p in images.paths],
                         ["train/ant/1.png", "train/ant/2.JPEG", "train/moth/a.jpeg",
                          "train/zebra/1.jpg"])
        self.assertEqual(images.labels, (0, 0, 1, 2))
        self.assertLen(images, 4)

    def test_hidden_entries_and_non_images_are_ignored(self):
        root = self.create_tempdir().full_path
        make_tree(root, ["train/cat/1.jpg", "train/cat/.DS_Store", "train/cat/notes.txt",
                         "train/.cache/x.jpg", "train/cat/.thumbs/2.jpg"])

        images = image_folder.list_images(root, image_folder.TRAIN_SPLIT)

        self.assertEqual(images.class_names, ("cat",))
        self.assertEqual([os.path.basename(p) for p in images.paths], ["1.jpg"])

    def test_val_folder_is_the_validation_split(self):
        root = self.create_tempdir().full_path
        make_tree(root, ["train/a/1.jpg", "train/b/1.jpg", "val/b/2.jpg"])

        images = image_folder.list_images(
            root, image_folder.VALIDATION_SPLIT, class_names=("a", "b")
        )

        self.assertEqual(images.labels, (1,))
        self.assertEqual(images.class_names, ("a", "b"))

    def test_missing_data_dir_names_it(self):
        missing = os.path.join(self.create_tempdir().full_path, "nowhere")

        with self.assertRaisesRegex(FileNotFoundError, "nowhere.*--data_dir"):
            image_folder.list_images(missing, image_folder.TRAIN_SPLIT)

    def test_missing_split_names_expected_folders(self):
        root = self.create_tempdir().full_path
        make_tree(root, ["train/a/1.jpg"])

        with self.assertRaisesRegex(FileNotFoundError, "validation.* or .*val"):
            image_folder.list_images(root, image_folder.VALIDATION_SPLIT, ("a",))

    def test_empty_class_folder_names_it(self):
        root = self.create_tempdir().full_path
        make_tree(root, ["train/a/1.jpg", "train/b/readme.txt"])

        with self.assertRaisesRegex(ValueError, r"train/b.*no image files"):
            image_folder.list_images(root, image_folder.TRAIN_SPLIT)

    def test_split_without_class_folders(self):
        root = self.create_tempdir().full_path
        make_tree(root, ["train/1.jpg"])

        with self.assertRaisesRegex(ValueError, "No class folders"):
            image_folder.list_images(root, image_folder.TRAIN_SPLIT)

    def test_validation_class_unknown_to_training(self):
        root = self.create_tempdir().full_path
        make_tree(root, ["train/a/1.jpg", "validation/a/1.jpg", "validation/c/1.jpg"])

        with self.assertRaisesRegex(ValueError, r"\['c'\]"):
            image_folder.list_images(root, image_folder.VALIDATION_SPLIT, ("a",))


if __name__ == "__main__":
    absltest.main()
