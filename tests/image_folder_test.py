"""Tests of listing an ImageNet-style folder tree."""

import os

from absl.testing import absltest
import tensorflow as tf

from alexnet_tf.data import image_folder


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



class FlatValidationFolderTest(tf.test.TestCase):
    """A validation split as ILSVRC-2012 ships it: flat images and a label file."""

    def setUp(self):
        super().setUp()
        self.root = self.create_tempdir().full_path
        make_tree(self.root, ["train/n01/a.jpg", "train/n02/b.jpg", "train/n03/c.jpg",
                              "val/v_0002.JPEG", "val/v_0001.JPEG", "val/v_0003.JPEG"])
        self.class_names = ("n01", "n02", "n03")

    def _write_labels(self, text):
        path = os.path.join(self.root, "labels.txt")
        with open(path, "w") as file:
            file.write(text)
        return path

    def _list(self, label_file):
        return image_folder.list_images(
            self.root, image_folder.VALIDATION_SPLIT, self.class_names, label_file
        )

    def test_synset_lines_label_files_in_name_order(self):
        images = self._list(self._write_labels("n03\nn01\nn03\n\n"))

        self.assertEqual([os.path.basename(path) for path in images.paths],
                         ["v_0001.JPEG", "v_0002.JPEG", "v_0003.JPEG"])
        self.assertEqual(images.labels, (2, 0, 2))
        self.assertEqual(images.class_names, self.class_names)

    def test_index_lines_count_from_zero(self):
        images = self._list(self._write_labels("2\n0\n1\n"))

        self.assertEqual(images.labels, (2, 0, 1))

    def test_unknown_class_names_the_line(self):
        with self.assertRaisesRegex(ValueError, "Line 2 of .*'n09'.*0 to 2"):
            self._list(self._write_labels("n01\nn09\nn02\n"))

    def test_index_out_of_range_names_the_line(self):
        with self.assertRaisesRegex(ValueError, "Line 3 .*'3'"):
            self._list(self._write_labels("0\n1\n3\n"))

    def test_line_count_must_match_images(self):
        with self.assertRaisesRegex(ValueError, "has 2 labels but .* has 3 images"):
            self._list(self._write_labels("n01\nn02\n"))

    def test_missing_label_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "missing.txt"):
            self._list(os.path.join(self.root, "missing.txt"))

    def test_flat_folder_without_label_file_suggests_it(self):
        with self.assertRaisesRegex(ValueError, "--validation_labels"):
            image_folder.list_images(
                self.root, image_folder.VALIDATION_SPLIT, self.class_names
            )

    def test_source_reads_labelled_files(self):
        label_file = self._write_labels("n02\nn02\nn01\n")

        source = image_folder.open_folder(
            self.root, image_folder.VALIDATION_SPLIT, self.class_names, label_file
        )

        self.assertEqual(source.num_examples, 3)
        self.assertTrue(source.fully_shuffled)
        records = list(source.read())
        self.assertEqual([int(record["label"]) for record in records], [1, 1, 0])
        self.assertEqual(records[0]["image"].numpy(), b"\xff\xd8\xff")

if __name__ == "__main__":
    absltest.main()
