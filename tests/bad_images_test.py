"""Tests of spotting bad image files and of counting the skipped ones."""

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

from alexnet_tf.data import bad_images
import sample_images

_PIXELS = sample_images.gradient_image(40, 60)


def _encoded(image_format):
    return sample_images.encode(_PIXELS, image_format)


def _cut(data):
    return data[: len(data) * 2 // 3]


def _check(data):
    is_valid, reason = bad_images.check_image(tf.constant(data))
    return bool(is_valid), reason.numpy().decode()


class CheckImageTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*sample_images.REAL_PHOTOS)
    def test_real_photos_are_valid(self, path):
        self.assertEqual(_check(sample_images.read_bytes(path)), (True, ""))

    @parameterized.parameters("JPEG", "PNG", "GIF", "BMP")
    def test_each_format_is_valid(self, image_format):
        self.assertEqual(_check(_encoded(image_format)), (True, ""))

    def test_padding_after_jpeg_end_is_valid(self):
        self.assertEqual(_check(_encoded("JPEG") + b"\0" * 1000), (True, ""))

    def test_check_runs_inside_tf_data(self):
        dataset = tf.data.Dataset.from_tensor_slices([_encoded("PNG"), b""])
        results = [bool(valid) for valid, _ in dataset.map(bad_images.check_image)]
        self.assertEqual(results, [True, False])

    @parameterized.named_parameters(
        ("empty", b"", "empty file"),
        ("one_byte", b"\xff", "not a JPEG"),
        ("html_page", b"<!DOCTYPE html><html></html>", "not a JPEG"),
        ("truncated_jpeg", _cut(_encoded("JPEG")), "truncated JPEG"),
        ("truncated_png", _cut(_encoded("PNG")), "truncated PNG"),
        ("truncated_gif", _cut(_encoded("GIF")), "truncated GIF"),
        ("truncated_bmp", _cut(_encoded("BMP")), "truncated BMP"),
        ("jpeg_header_only", b"\xff\xd8\xff\xe0", "truncated JPEG"),
    )
    def test_bad_file_is_invalid_with_reason(self, data, expected_reason):
        is_valid, reason = _check(data)

        self.assertFalse(is_valid)
        self.assertStartsWith(reason, expected_reason)


class BadImageLogTest(absltest.TestCase):

    def test_counts_and_names_each_file_once(self):
        log = bad_images.BadImageLog("test split", max_named=2)

        with self.assertLogs(logger="absl", level="WARNING") as logs:
            log.record(b"/data/a.jpg", b"empty file")
            log.record(b"/data/a.jpg", b"empty file")
            log.record("/data/b.jpg", "truncated JPEG")
            log.record("/data/c.jpg", "truncated JPEG")

        self.assertEqual(log.count, 3)
        self.assertEqual(log.reasons(), {"empty file": 1, "truncated JPEG": 2})
        text = "\n".join(logs.output)
        self.assertEqual(text.count("/data/a.jpg"), 1)
        self.assertIn("/data/b.jpg", text)
        self.assertNotIn("/data/c.jpg", text)

    def test_running_count_is_logged_after_named_files(self):
        log = bad_images.BadImageLog("test split", max_named=1, report_every=3)

        with self.assertLogs(logger="absl", level="WARNING") as logs:
            for index in range(3):
                log.record(f"/data/{index}.jpg", "empty file")

        self.assertIn("Skipped 3 bad image files in the test split", logs.output[-1])

    def test_records_from_a_graph(self):
        log = bad_images.BadImageLog("test split")
        dataset = tf.data.Dataset.from_tensor_slices(["x.jpg", "y.jpg"]).map(
            lambda name: log.record_tensors(name, tf.constant("empty file"))
        )

        with self.assertLogs(logger="absl", level="WARNING"):
            results = [bool(result) for result in dataset]

        self.assertEqual(results, [False, False])
        self.assertEqual(log.count, 2)


if __name__ == "__main__":
    absltest.main()
