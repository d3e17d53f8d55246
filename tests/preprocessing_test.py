"""Tests of decoding and augmentation, eagerly and inside tf.data."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf

from alexnet_tf import preprocessing
import sample_images

IMAGE_SIZE = 67
RESIZE_SIZE = 76


def map_in_dataset(function, *args):
    """Runs `function(*args)` as a tf.data map, where it is traced into a graph."""
    dataset = tf.data.Dataset.from_tensors(args).map(function)
    return next(iter(dataset))


class DecodeTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*sample_images.REAL_PHOTOS)
    def test_real_photos_decode_to_rgb(self, path):
        image = preprocessing.decode_image(sample_images.read_bytes(path))

        self.assertEqual(image.dtype, tf.uint8)
        self.assertEqual(image.shape[-1], 3)
        self.assertGreater(image.shape[0], 50)

    def test_png_saved_as_jpeg_decodes_by_content(self):
        pixels = sample_images.gradient_image(20, 30)
        path = self.create_tempfile("photo.JPEG", content=sample_images.encode(pixels, "PNG"))

        image = preprocessing.decode_image(tf.io.read_file(path.full_path))

        self.assertAllEqual(image, pixels)

    def test_cmyk_jpeg_becomes_rgb(self):
        pixels = sample_images.gradient_image(32, 48)
        image_bytes = sample_images.encode(pixels, "JPEG", mode="CMYK", quality=95)

        image = preprocessing.decode_image(image_bytes)

        self.assertEqual(image.shape, (32, 48, 3))
        # JPEG is lossy; the colours must still match, not be inverted or swapped.
        self.assertAllClose(tf.cast(image, tf.float32), pixels.astype(np.float32), atol=20)

    def test_grayscale_jpeg_becomes_three_equal_channels(self):
        pixels = sample_images.gradient_image(24, 24)
        image_bytes = sample_images.encode(pixels, "JPEG", mode="L", quality=95)

        image = preprocessing.decode_image(image_bytes).numpy()

        self.assertEqual(image.shape, (24, 24, 3))
        self.assertAllEqual(image[..., 0], image[..., 1])
        self.assertAllEqual(image[..., 0], image[..., 2])

    def test_sixteen_bit_png_scales_to_eight_bits(self):
        pixels = np.full((4, 5, 3), 65535, np.uint16)
        pixels[0, 0] = [0, 32896, 65535]
        image_bytes = tf.io.encode_png(pixels)

        image = preprocessing.decode_image(image_bytes)

        self.assertEqual(image.dtype, tf.uint8)
        self.assertAllEqual(image[0, 0], [0, 128, 255])
        self.assertAllEqual(image[1, 1], [255, 255, 255])

    def test_rgba_png_drops_alpha(self):
        pixels = np.zeros((3, 3, 4), np.uint8)
        pixels[..., 0] = 200
        pixels[..., 3] = 10

        image = preprocessing.decode_image(tf.io.encode_png(pixels))

        self.assertAllEqual(image[..., 0], np.full((3, 3), 200))
        self.assertEqual(image.shape, (3, 3, 3))


class CropTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(
        ("square", 100, 100),
        ("smaller_than_crop", 28, 28),
        ("one_pixel", 1, 1),
        ("one_pixel_wide", 500, 1),
        ("extreme_wide", 3, 4000),
        ("landscape", 120, 200),
    )
    def test_crop_has_exact_size(self, height, width):
        image = tf.constant(sample_images.gradient_image(height, width))
        seed = tf.constant([3, 4], tf.int64)

        for run in (lambda f, *a: f(*a), map_in_dataset):
            train_crop = run(
                lambda x, s: preprocessing.random_crop(x, IMAGE_SIZE, RESIZE_SIZE, s), image, seed
            )
            eval_crop = run(
                lambda x: preprocessing.center_crop(x, IMAGE_SIZE, RESIZE_SIZE), image
            )
            for crop in (train_crop, eval_crop):
                self.assertEqual(crop.shape, (IMAGE_SIZE, IMAGE_SIZE, 3))
                self.assertEqual(crop.dtype, tf.float32)
                self.assertBetween(float(tf.reduce_min(crop)), 0.0, 255.0)
                self.assertBetween(float(tf.reduce_max(crop)), 0.0, 255.0)

    def test_center_crop_of_resized_image(self):
        # A 100x200 image resized to a shorter side of 76 is 76x152; the central
        # 67x67 crop covers the middle 67/76 of the rows and the same height of
        # columns around the middle.
        image = tf.constant(sample_images.gradient_image(100, 200))

        crop = preprocessing.center_crop(image, IMAGE_SIZE, RESIZE_SIZE).numpy()

        window_side = round(100 * IMAGE_SIZE / RESIZE_SIZE)
        top = round((100 - window_side) / 2)
        left = round((200 - window_side) / 2)
        expected = tf.image.resize(
            image[top : top + window_side, left : left + window_side],
            (IMAGE_SIZE, IMAGE_SIZE),
            antialias=True,
        )
        self.assertAllClose(crop, expected, atol=1e-3)

    def test_random_crop_depends_on_seed_only(self):
        image = tf.constant(sample_images.gradient_image(200, 300))

        first = preprocessing.random_crop(image, IMAGE_SIZE, RESIZE_SIZE, tf.constant([1, 2]))
        again = preprocessing.random_crop(image, IMAGE_SIZE, RESIZE_SIZE, tf.constant([1, 2]))
        other = preprocessing.random_crop(image, IMAGE_SIZE, RESIZE_SIZE, tf.constant([5, 6]))

        self.assertAllEqual(first, again)
        self.assertNotAllClose(first, other)


class DecodeAndCropTest(tf.test.TestCase, parameterized.TestCase):
    """The fused JPEG path against decoding the whole image, then cropping."""

    def _both_crops(self, image_bytes, image_size, resize_size, seed):
        image_bytes = tf.constant(image_bytes)
        seed = tf.constant(seed, tf.int64)
        fused = preprocessing.decode_and_random_crop(image_bytes, image_size, resize_size, seed)
        whole = preprocessing.random_crop(
            preprocessing.decode_image(image_bytes), image_size, resize_size, seed
        )
        return fused, whole

    @parameterized.parameters(0, 1, 2, 3)
    def test_full_scale_jpeg_matches_whole_decode(self, seed):
        # china.jpg is 427x640: a 227 crop of its 256 resize is a 379-pixel
        # window, too small for 1/2 scale, so the pixels must match exactly.
        photo = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])

        fused, whole = self._both_crops(photo, 227, 256, [seed, 9])

        self.assertAllEqual(fused, whole)

    def test_png_takes_the_whole_decode_path(self):
        png = sample_images.read_bytes(sample_images.REAL_PHOTOS[2])

        fused, whole = self._both_crops(png, IMAGE_SIZE, RESIZE_SIZE, [4, 5])

        self.assertAllEqual(fused, whole)

    def test_large_jpeg_decodes_at_reduced_scale(self):
        # A 67 crop of a 67 resize of a 427-pixel shorter side is a 427-pixel
        # window, which 1/4 scale shrinks to 106 pixels before the resize.
        photo = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])
        self.assertEqual(int(preprocessing._dct_ratio_index(427, IMAGE_SIZE)), 2)

        fused, whole = self._both_crops(photo, IMAGE_SIZE, IMAGE_SIZE, [1, 2])

        self.assertEqual(fused.shape, (IMAGE_SIZE, IMAGE_SIZE, 3))
        # Another downscaling filter and a window rounded to the scale move
        # pixels a little, not the picture.
        self.assertLess(float(tf.reduce_mean(tf.abs(fused - whole))), 10.0)

    def test_bilinear_training_resize_close_to_antialiased(self):
        photo = tf.constant(sample_images.read_bytes(sample_images.REAL_PHOTOS[0]))
        seed = tf.constant([2, 3], tf.int64)

        bilinear = preprocessing.decode_and_random_crop(photo, 227, 256, seed, antialias=False)
        filtered = preprocessing.decode_and_random_crop(photo, 227, 256, seed, antialias=True)

        self.assertEqual(bilinear.shape, (227, 227, 3))
        self.assertNotAllClose(bilinear, filtered)
        # About 3.4 levels of 255 on this detailed photo.
        self.assertLess(float(tf.reduce_mean(tf.abs(bilinear - filtered))), 5.0)

    def test_training_composes_crop_flip_lighting_and_mean(self):
        photo = tf.constant(sample_images.read_bytes(sample_images.REAL_PHOTOS[1]))
        seed = tf.constant([7, 8], tf.int64)
        crop_seed, flip_seed, lighting_seed = tf.unstack(tf.random.split(seed, 3))

        image = preprocessing.preprocess_for_train(photo, 227, 256, 0.1, seed)

        expected = preprocessing.decode_and_random_crop(
            photo, 227, 256, crop_seed, antialias=False
        )
        expected = preprocessing.random_flip(expected, flip_seed)
        expected = preprocessing.pca_lighting(expected, 0.1, lighting_seed)
        self.assertAllClose(image, preprocessing.normalize(expected), atol=1e-3)

    @parameterized.parameters((100, 67, 0), (133, 67, 0), (134, 67, 1), (268, 67, 2),
                              (536, 67, 3), (5000, 67, 3), (10, 67, 0))
    def test_dct_ratio_keeps_window_at_least_crop(self, side, image_size, expected_index):
        self.assertEqual(int(preprocessing._dct_ratio_index(side, image_size)), expected_index)

    def test_progressive_jpeg_close_to_whole_decode(self):
        pixels = np.asarray(tf.io.decode_jpeg(
            sample_images.read_bytes(sample_images.REAL_PHOTOS[1])))
        progressive = sample_images.encode(pixels, "JPEG", progressive=True, quality=90)

        fused, whole = self._both_crops(progressive, 227, 256, [3, 3])

        self.assertLess(float(tf.reduce_max(tf.abs(fused - whole))), 8.0)

    @parameterized.named_parameters(
        ("smaller_than_crop_jpeg", 20, 30, "JPEG"),
        ("one_pixel_wide_jpeg", 300, 1, "JPEG"),
        ("one_pixel_high_png", 1, 300, "PNG"),
        ("one_pixel_jpeg", 1, 1, "JPEG"),
        ("extreme_aspect_jpeg", 4, 3000, "JPEG"),
        ("sixteen_bit_png", 40, 50, "PNG16"),
    )
    def test_odd_images_give_exact_training_size(self, height, width, image_format):
        pixels = sample_images.gradient_image(height, width)
        if image_format == "PNG16":
            image_bytes = tf.io.encode_png(tf.cast(pixels, tf.uint16) * 257).numpy()
        else:
            image_bytes = sample_images.encode(pixels, image_format)

        image = map_in_dataset(
            lambda data: preprocessing.preprocess_for_train(
                data, IMAGE_SIZE, RESIZE_SIZE, seed=tf.constant([1, 1])
            ),
            tf.constant(image_bytes),
        )

        self.assertEqual(image.shape, (IMAGE_SIZE, IMAGE_SIZE, 3))
        self.assertTrue(np.isfinite(image.numpy()).all())
        # Mean-subtracted pixels of a 0-255 image, plus PCA noise.
        self.assertBetween(float(tf.reduce_max(tf.abs(image))), 1.0, 200.0)

    def test_exif_orientation_is_ignored(self):
        pixels = sample_images.gradient_image(30, 50)
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view.
        rotated_tag = sample_images.encode(pixels, "JPEG", exif=exif.tobytes(), quality=95)
        plain = sample_images.encode(pixels, "JPEG", quality=95)

        decoded = preprocessing.decode_image(tf.constant(rotated_tag))

        self.assertEqual(decoded.shape, (30, 50, 3))
        self.assertAllEqual(decoded, preprocessing.decode_image(tf.constant(plain)))


class FlipTest(tf.test.TestCase):

    def test_flip_gives_original_or_mirror_and_both_occur(self):
        image = tf.constant(sample_images.gradient_image(8, 9), tf.float32)
        mirrored = image[:, ::-1]
        outcomes = set()

        for index in range(40):
            seed = tf.constant([index, 7])
            for flipped in (
                preprocessing.random_flip(image, seed),
                map_in_dataset(preprocessing.random_flip, image, seed),
            ):
                if np.array_equal(flipped, image):
                    outcomes.add("original")
                elif np.array_equal(flipped, mirrored):
                    outcomes.add("mirror")
                else:
                    self.fail("A flip gave neither the original nor its mirror.")

        self.assertEqual(outcomes, {"original", "mirror"})


class PcaLightingTest(tf.test.TestCase):

    def test_fixed_alpha_gives_eigenvalue_weighted_eigenvector_shift(self):
        alpha = np.array([0.1, -0.2, 0.3], np.float32)
        eigenvectors = np.array(preprocessing.IMAGENET_PCA_EIGENVECTORS)
        eigenvalues = np.array(preprocessing.IMAGENET_PCA_EIGENVALUES) * 255

        shift = preprocessing.rgb_shift(alpha).numpy()

        # Columns are the eigenvectors: sum_i alpha_i * lambda_i * p_i.
        expected = sum(alpha[i] * eigenvalues[i] * eigenvectors[:, i] for i in range(3))
        self.assertAllClose(shift, expected, rtol=1e-5)
        # The first eigenvector, about -0.57 * (1, 1, 1), dominates: a positive
        # first coefficient darkens all of R, G and B by about the same amount.
        first_only = preprocessing.rgb_shift(np.array([1.0, 0.0, 0.0])).numpy()
        self.assertAllClose(first_only, [-31.47, -32.21, -32.36], atol=0.01)

    def test_shift_is_added_to_every_pixel(self):
        image = tf.fill((4, 5, 3), 100.0)
        seed = tf.constant([11, 12])

        lit = preprocessing.pca_lighting(image, 0.1, seed)

        alpha = tf.random.stateless_normal([3], seed=seed, stddev=0.1)
        expected = 100.0 + preprocessing.rgb_shift(alpha)
        self.assertAllClose(lit, tf.broadcast_to(expected, (4, 5, 3)), rtol=1e-6)

    def test_mean_shift_over_many_draws_is_near_zero(self):
        shifts = tf.stack(
            [
                preprocessing.pca_lighting(tf.zeros((1, 1, 3)), 0.1, tf.constant([index, 0]))[0, 0]
                for index in range(2000)
            ]
        ).numpy()

        # alpha ~ N(0, 0.1): the first component's shift has a stddev of about
        # 0.1 * 0.2175 * 255 * 0.57 = 3.2 per channel, so the mean of 2000 draws
        # has a stddev of about 0.07.
        self.assertAllClose(shifts.mean(axis=0), [0, 0, 0], atol=0.3)
        self.assertAllClose(shifts.std(axis=0), [3.2, 3.2, 3.2], rtol=0.15)

    def test_zero_stddev_keeps_the_image(self):
        image = tf.random.uniform((3, 3, 3), 0, 255)

        self.assertAllEqual(preprocessing.pca_lighting(image, 0.0, tf.constant([1, 1])), image)


class AddToEveryPixelTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters((4, 5, 3), (2, 7, 1, 3), (1, 1, 3))
    def test_equals_broadcasting(self, *shape):
        images = tf.random.uniform(shape, 0, 255, seed=1)
        rgb = tf.constant([-123.68, 10.5, 0.25])

        self.assertAllEqual(preprocessing.add_to_every_pixel(images, rgb), images + rgb)

    def test_keeps_static_shape_in_a_graph(self):
        dataset = tf.data.Dataset.from_tensors(tf.zeros((6, 9, 3))).map(
            lambda image: preprocessing.add_to_every_pixel(image, tf.ones([3]))
        )

        self.assertEqual(dataset.element_spec.shape, (6, 9, 3))


class PreprocessTest(tf.test.TestCase):

    def test_real_photo_in_tf_data(self):
        image_bytes = sample_images.read_bytes(sample_images.REAL_PHOTOS[0])

        train_image = map_in_dataset(
            lambda b, s: preprocessing.preprocess_for_train(b, IMAGE_SIZE, RESIZE_SIZE, 0.1, s),
            image_bytes,
            tf.constant([1, 2], tf.int64),
        )
        eval_image = map_in_dataset(
            lambda b: preprocessing.preprocess_for_eval(b, IMAGE_SIZE, RESIZE_SIZE), image_bytes
        )

        for image in (train_image, eval_image):
            self.assertEqual(image.shape, (IMAGE_SIZE, IMAGE_SIZE, 3))
            self.assertEqual(image.dtype, tf.float32)
            # Mean subtracted: values lie around zero, not in [0, 255].
            self.assertLess(float(tf.reduce_min(image)), 0.0)
            self.assertLess(float(tf.reduce_max(image)), 200.0)

    def test_eval_is_deterministic_and_matches_denormalize(self):
        image_bytes = sample_images.read_bytes(sample_images.REAL_PHOTOS[2])

        first = preprocessing.preprocess_for_eval(image_bytes, IMAGE_SIZE, RESIZE_SIZE)
        second = preprocessing.preprocess_for_eval(image_bytes, IMAGE_SIZE, RESIZE_SIZE)

        self.assertAllEqual(first, second)
        viewed = preprocessing.denormalize(first)
        self.assertBetween(float(tf.reduce_min(viewed)), 0.0, 1.0)
        self.assertBetween(float(tf.reduce_max(viewed)), 0.0, 1.0)


if __name__ == "__main__":
    absltest.main()
