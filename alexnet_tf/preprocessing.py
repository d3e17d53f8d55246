"""Image decoding and augmentation, shared by the input pipeline and the export.

Training and serving both call `preprocess_for_eval`, so a served model receives
exactly the pixels the validation metrics were computed on. `ten_crops` returns
the paper's ten test crops for `alexnet_tf.evaluate`, and its centre crop is
that same crop.

All functions work on one image and run eagerly or inside `tf.data.Dataset.map`.
Pixel values are floats on a 0-255 scale until `normalize` subtracts the mean.
"The paper" is Krizhevsky, Sutskever and Hinton, "ImageNet Classification with
Deep Convolutional Neural Networks", NIPS 2012.
"""

import functools

import tensorflow as tf

# Per-channel mean of the ImageNet training set, RGB, 0-255 scale. The paper
# subtracts a per-pixel mean image; a per-channel mean is the usual
# simplification and does not depend on the input size.
IMAGENET_RGB_MEAN = (123.68, 116.78, 103.94)

# PCA of the RGB pixel covariance over the ImageNet training set, pixels on a
# 0-1 scale, RGB order, as published with fb.resnet.torch and reused by MXNet
# and GluonCV. Columns of the matrix are the eigenvectors.
IMAGENET_PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

# The paper draws each PCA coefficient from N(0, 0.1) (section 4.1).
DEFAULT_PCA_STDDEV = 0.1
DEFAULT_RESIZE_SIZE = 256

_PIXEL_SCALE = 255.0

JPEG_SIGNATURE = b"\xff\xd8\xff"
# Scales at which libjpeg can decode inside its inverse DCT, skipping most of
# the work for images much larger than the model's input.
_DCT_SCALE_RATIOS = (1, 2, 4, 8)


def decode_image(image_bytes):
    """Decodes a JPEG, PNG, GIF or BMP image by its content, not its file name.

    Grayscale and CMYK JPEGs, grayscale, palette and RGBA PNGs, and 16-bit PNGs
    all become RGB; the alpha channel of a PNG is dropped and 16-bit samples are
    scaled to 8 bits. Animated GIFs give their first frame. The EXIF orientation
    tag is ignored, so a photo stored sideways stays sideways: TensorFlow's
    decoders do not read EXIF, and neither training nor serving rotates.

    Args:
        image_bytes: scalar string tensor with the encoded image.

    Returns:
        A uint8 tensor of shape `(height, width, 3)`.
    """
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def is_jpeg(image_bytes):
    """Returns a scalar bool tensor: whether the bytes start like a JPEG file."""
    return tf.equal(tf.strings.substr(image_bytes, 0, len(JPEG_SIGNATURE)), JPEG_SIGNATURE)


def _crop_window(image_shape, image_size, resize_size, offset_fractions):
    """Computes a square crop window in the original image's pixel coordinates.

    The window covers what an `image_size` crop would cover after resizing the
    image so that its shorter side is `resize_size` pixels. Cropping first and
    resizing only the window gives the same image for far less work, and keeps
    memory bounded for extreme aspect ratios, whose longer side would otherwise
    grow without limit.

    Args:
        image_shape: int32 tensor `(height, width, channels)` of the original.
        image_size: side of the final crop, in pixels.
        resize_size: the shorter side the crop is taken from, in pixels.
        offset_fractions: float tensor of shape (2,), each in [0, 1]: where the
            window lies along the free range of each axis, 0.5 for the centre.

    Returns:
        `(top, left, side)` int32 scalars.
    """
    height = image_shape[0]
    width = image_shape[1]
    shorter_side = tf.minimum(height, width)

    scaled_side = tf.cast(shorter_side, tf.float32) * (image_size / resize_size)
    side = tf.cast(tf.round(scaled_side), tf.int32)
    side = tf.clip_by_value(side, 1, shorter_side)

    free_range = tf.cast(tf.stack([height - side, width - side]), tf.float32)
    offsets = tf.cast(tf.round(free_range * offset_fractions), tf.int32)
    return offsets[0], offsets[1], side


def _resize_window(window, image_size, antialias=True):
    """Resizes a square window to `image_size` squared, float32, bilinear."""
    resized = tf.image.resize(window, (image_size, image_size), antialias=antialias)
    return tf.reshape(resized, (image_size, image_size, 3))


def _crop_and_resize(image, image_size, resize_size, offset_fractions):
    """Crops a window of `image` and resizes it to `image_size` squared, float32."""
    top, left, side = _crop_window(tf.shape(image), image_size, resize_size, offset_fractions)
    return _resize_window(image[top : top + side, left : left + side], image_size)


def _dct_ratio_index(side, image_size):
    """Returns the index into `_DCT_SCALE_RATIOS` of the largest usable ratio.

    A ratio is usable when the scaled window keeps at least `image_size`
    pixels a side, so the final resize still only shrinks and loses nothing.
    """
    ratios = tf.constant(_DCT_SCALE_RATIOS, tf.int32)
    usable = tf.cast(side // ratios >= image_size, tf.int32)
    return tf.maximum(tf.reduce_sum(usable) - 1, 0)


def _decode_jpeg_window(image_bytes, top, left, side, image_size):
    """Decodes only a square window of a JPEG, scaled down in the DCT where possible.

    `tf.io.decode_and_crop_jpeg` takes the window in the coordinates of the
    scaled image, so the window is divided by the ratio. Its `ratio` is a
    static attribute, hence one branch per ratio.
    """

    def decode_at(ratio):
        window = tf.stack([top // ratio, left // ratio, side // ratio, side // ratio])
        return tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3, ratio=ratio)

    branches = [functools.partial(decode_at, ratio) for ratio in _DCT_SCALE_RATIOS]
    return tf.switch_case(_dct_ratio_index(side, image_size), branches)


def decode_and_random_crop(image_bytes, image_size, resize_size, seed, antialias=True):
    """Decodes an image and takes the crop that `random_crop` would take.

    JPEGs skip most of the decoding: the crop window is chosen from the header's
    shape, and only that window is decoded, at 1/2, 1/4 or 1/8 scale when the
    window is that many times larger than the crop. Other formats are decoded
    whole. With the same seed the crop covers the same part of the image as
    `random_crop(decode_image(image_bytes), ...)`.

    With `antialias=False` the window is resized by plain bilinear
    interpolation, which on a 2-core CPU took about half the time of the
    antialiased resize. Because DCT scaling leaves a JPEG window less than
    twice the crop, the downscaling factor stays below 2, where bilinear
    interpolation still reads every input pixel and aliasing stays small.
    With `antialias=True` and a JPEG decoded at full scale, the pixels equal
    those of `random_crop` (progressive JPEGs may differ by a few levels).

    Args:
        image_bytes: scalar string tensor with an encoded image.
        image_size: side of the crop, in pixels.
        resize_size: shorter side of the image the crop is taken from, in pixels.
        seed: int32 or int64 tensor of shape (2,) for the stateless random ops.
        antialias: whether to resize with an antialiasing filter.

    Returns:
        A float32 tensor of shape `(image_size, image_size, 3)`, 0-255 scale.
    """
    offset_fractions = tf.random.stateless_uniform([2], seed=seed)

    def crop_jpeg():
        shape = tf.image.extract_jpeg_shape(image_bytes)
        top, left, side = _crop_window(shape, image_size, resize_size, offset_fractions)
        window = _decode_jpeg_window(image_bytes, top, left, side, image_size)
        return _resize_window(window, image_size, antialias)

    def crop_other():
        image = decode_image(image_bytes)
        if antialias:
            return _crop_and_resize(image, image_size, resize_size, offset_fractions)

        # Other formats have no DCT scaling, so a window of twice the crop or
        # more keeps the antialiasing filter.
        top, left, side = _crop_window(tf.shape(image), image_size, resize_size, offset_fractions)
        window = image[top : top + side, left : left + side]
        return tf.cond(
            side >= 2 * image_size,
            lambda: _resize_window(window, image_size, antialias=True),
            lambda: _resize_window(window, image_size, antialias=False),
        )

    return tf.cond(is_jpeg(image_bytes), crop_jpeg, crop_other)


def random_crop(image, image_size, resize_size, seed):
    """Takes a random `image_size` square crop at a random place of the image.

    The crop is what a random crop of the image resized to a shorter side of
    `resize_size` would give. Images smaller than the crop and images with
    extreme aspect ratios give exactly `image_size` squared as well: the window
    then shrinks to the shorter side and is scaled up.

    Args:
        image: uint8 or float tensor of shape `(height, width, 3)`.
        image_size: side of the crop, in pixels.
        resize_size: shorter side of the image the crop is taken from, in pixels.
        seed: int32 or int64 tensor of shape (2,) for the stateless random ops.

    Returns:
        A float32 tensor of shape `(image_size, image_size, 3)`, 0-255 scale.
    """
    offset_fractions = tf.random.stateless_uniform([2], seed=seed)
    return _crop_and_resize(image, image_size, resize_size, offset_fractions)


def center_crop(image, image_size, resize_size):
    """Takes the central `image_size` square crop of the resized image.

    Args:
        image: uint8 or float tensor of shape `(height, width, 3)`.
        image_size: side of the crop, in pixels.
        resize_size: shorter side of the image the crop is taken from, in pixels.

    Returns:
        A float32 tensor of shape `(image_size, image_size, 3)`, 0-255 scale.
    """
    return _crop_and_resize(image, image_size, resize_size, tf.constant([0.5, 0.5]))


def _ten_crop_windows(image_shape, image_size, resize_size):
    """Computes the five crop windows of `ten_crops` in the original image's pixels.

    The corner windows lie in the corners of the central square of the
    image's shorter side, which is the central `resize_size` square after
    resizing. The centre window is the one `center_crop` takes, so the centre
    crop equals the crop of `preprocess_for_eval` exactly. It lies inside the
    central square as well.

    Returns:
        `(tops, lefts, side)`. `tops` and `lefts` are int32 tensors of shape
        (5,) with the windows' top and left edges, in the order top left, top
        right, bottom left, bottom right, centre. `side` is the int32 side of
        every window.
    """
    center = tf.constant([0.5, 0.5])
    square_top, square_left, square_side = _crop_window(image_shape, resize_size, resize_size,
                                                        center)
    center_top, center_left, side = _crop_window(image_shape, image_size, resize_size, center)

    far = square_side - side
    tops = tf.stack([square_top, square_top, square_top + far, square_top + far, center_top])
    lefts = tf.stack([square_left, square_left + far, square_left, square_left + far,
                      center_left])
    return tops, lefts, side


def ten_crops(image_bytes, image_size, resize_size=DEFAULT_RESIZE_SIZE):
    """Decodes one image and takes the paper's ten test crops, mean subtracted.

    The paper (section 4.1) averages the predictions of ten patches at test
    time: the four corner patches and the centre patch of the image, and
    their horizontal reflections. Here the image is the central
    `resize_size` square of the image resized to a shorter side of
    `resize_size` (256 by 256 in the paper), as for `center_crop`. Only the
    five windows are resized, which gives the same pixels for far less work.

    The crops come in this order: top left, top right, bottom left, bottom
    right, centre, then the same five mirrored left to right. The centre
    crop, index 4, equals `preprocess_for_eval(image_bytes, ...)`.

    Args:
        image_bytes: scalar string tensor with an encoded image.
        image_size: side of the model's input, in pixels.
        resize_size: shorter side the crops are taken from, in pixels, at
            least `image_size`.

    Returns:
        A float32 tensor of shape `(10, image_size, image_size, 3)`.
    """
    image = decode_image(image_bytes)
    tops, lefts, side = _ten_crop_windows(tf.shape(image), image_size, resize_size)

    crops = []
    for index in range(5):
        window = image[tops[index] : tops[index] + side, lefts[index] : lefts[index] + side]
        crops.append(_resize_window(window, image_size))
    crops = tf.stack(crops)

    crops = tf.concat([crops, tf.image.flip_left_right(crops)], axis=0)
    return normalize(crops)


def random_flip(image, seed):
    """Mirrors the image left to right with probability 0.5."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def pca_lighting(image, stddev, seed):
    """Adds the paper's PCA colour noise to every pixel (section 4.1).

    Adds `eigenvectors @ (alpha * eigenvalues)` to each RGB pixel, with one
    `alpha ~ N(0, stddev)` of shape (3,) drawn per call. The eigenvalues are
    scaled from the 0-1 pixel scale they were computed on to the 0-255 scale of
    `image`.

    Args:
        image: float32 tensor of shape `(height, width, 3)`, RGB, 0-255 scale.
        stddev: standard deviation of alpha. 0 leaves the image unchanged.
        seed: int32 or int64 tensor of shape (2,) for the stateless random op.

    Returns:
        The image with the colour shift added, not clipped.
    """
    alpha = tf.random.stateless_normal([3], seed=seed, stddev=stddev)
    return add_to_every_pixel(image, rgb_shift(alpha))


def rgb_shift(alpha):
    """Returns the RGB shift of shape (3,), 0-255 scale, for PCA coefficients `alpha`."""
    eigenvalues = tf.constant(IMAGENET_PCA_EIGENVALUES, tf.float32) * _PIXEL_SCALE
    eigenvectors = tf.constant(IMAGENET_PCA_EIGENVECTORS, tf.float32)
    return tf.linalg.matvec(eigenvectors, tf.cast(alpha, tf.float32) * eigenvalues)


def add_to_every_pixel(images, rgb):
    """Adds one RGB vector to every pixel of an image or a batch of images.

    Broadcasting a vector of 3 over the last axis runs element by element on
    the CPU; adding a tiled row of `width * 3` values instead took about a
    third of the time on a 2-core CPU for 227 by 227 images.

    Args:
        images: float32 tensor of shape `(..., height, width, 3)`.
        rgb: float32 tensor of shape (3,).

    Returns:
        A tensor of the shape of `images`.
    """
    shape = tf.shape(images)
    row_length = shape[-2] * 3
    rows = tf.reshape(images, [-1, row_length])
    rows += tf.tile(tf.cast(rgb, images.dtype), [shape[-2]])
    return tf.reshape(rows, shape)


def normalize(image):
    """Subtracts the per-channel ImageNet mean from a 0-255 RGB float image."""
    return add_to_every_pixel(image, -tf.constant(IMAGENET_RGB_MEAN, tf.float32))


def denormalize(images):
    """Undoes `normalize` and clips to [0, 1], for viewing images in TensorBoard."""
    images = images + tf.constant(IMAGENET_RGB_MEAN, tf.float32)
    return tf.clip_by_value(images / _PIXEL_SCALE, 0.0, 1.0)


def preprocess_for_train(
    image_bytes,
    image_size,
    resize_size=DEFAULT_RESIZE_SIZE,
    pca_stddev=DEFAULT_PCA_STDDEV,
    seed=None,
):
    """Decodes and augments one training image: crop, flip, PCA lighting, mean.

    JPEGs are decoded only inside the crop window and resized without the
    antialiasing filter, see `decode_and_random_crop`.

    Args:
        image_bytes: scalar string tensor with an encoded image.
        image_size: side of the model's input, in pixels.
        resize_size: shorter side the random crop is taken from, in pixels.
        pca_stddev: standard deviation of the PCA lighting coefficients.
        seed: int32 or int64 tensor of shape (2,) that makes the augmentation
            repeatable, or None to draw one.

    Returns:
        A float32 tensor of shape `(image_size, image_size, 3)`, mean subtracted.
    """
    if seed is None:
        seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    crop_seed, flip_seed, lighting_seed = tf.unstack(tf.random.split(seed, 3))

    image = decode_and_random_crop(image_bytes, image_size, resize_size, crop_seed,
                                   antialias=False)
    image = random_flip(image, flip_seed)

    # PCA lighting and mean subtraction each add one RGB vector to every
    # pixel, so their sum is added in one pass, as `normalize(pca_lighting(...))`.
    pixel_offset = -tf.constant(IMAGENET_RGB_MEAN, tf.float32)
    if pca_stddev > 0:
        alpha = tf.random.stateless_normal([3], seed=lighting_seed, stddev=pca_stddev)
        pixel_offset += rgb_shift(alpha)
    return add_to_every_pixel(image, pixel_offset)


def preprocess_for_eval(image_bytes, image_size, resize_size=DEFAULT_RESIZE_SIZE):
    """Decodes one image and takes its central crop, mean subtracted.

    The whole image is decoded at full scale, once, so that evaluation and the
    exported model see exactly the same pixels.

    Args:
        image_bytes: scalar string tensor with an encoded image.
        image_size: side of the model's input, in pixels.
        resize_size: shorter side the central crop is taken from, in pixels.

    Returns:
        A float32 tensor of shape `(image_size, image_size, 3)`.
    """
    image = decode_image(image_bytes)
    image = center_crop(image, image_size, resize_size)
    return normalize(image)
