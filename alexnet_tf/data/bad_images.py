"""Finds image files that cannot be decoded, before the decoder fails on them.

Real data sets hold empty files, web pages saved as .jpg and downloads that
stopped half way. `check_image` spots them from the first and last bytes, which
costs far less than decoding, so the input pipeline can skip them (counting
them in a `BadImageLog`) or stop with the file's name.

A truncated JPEG has to be caught here: decoding only a crop window near the
top of the image succeeds and hides the damage, and a window that reaches the
missing rows fails without naming the file.
"""

import collections
import threading

from absl import logging
import tensorflow as tf

from alexnet_tf import preprocessing

# Start of the error that names a bad image file. `input_pipeline.data_error_message`
# looks for it, so that entry points can print the error as one line.
BAD_IMAGE = "Invalid image file"

# End markers are searched for in this many final bytes, because some writers
# pad files after the marker. Files with a longer trailer, such as "motion
# photos" with a video after the JPEG, are reported as truncated.
TAIL_BYTES = 4096

_PNG_SIGNATURE = b"\x89PNG"
_GIF_SIGNATURE = b"GIF8"
_BMP_SIGNATURE = b"BM"

# JPEG end-of-image marker. Entropy-coded data escapes every 0xFF byte, so the
# pair appears only as a marker.
_JPEG_END = b"\xff\xd9"
# Type and CRC of the last PNG chunk, which always has no data.
_PNG_END = b"IEND\xaeB`\x82"
# The GIF trailer byte. LZW data may hold it anywhere, so it must come last.
_GIF_END = b";"

_BMP_SIZE_OFFSET = 2


def _tail_contains(image_bytes, pattern):
    """Returns whether `pattern` occurs in the last `TAIL_BYTES` bytes."""
    # Most files end right after the marker; only the others pay for a search.
    return tf.cond(
        _ends_with(image_bytes, pattern),
        lambda: tf.constant(True),
        lambda: _search_tail(image_bytes, pattern),
    )


def _search_tail(image_bytes, pattern):
    length = tf.strings.length(image_bytes)
    start = tf.maximum(length - TAIL_BYTES, 0)
    tail = tf.io.decode_raw(tf.strings.substr(image_bytes, start, TAIL_BYTES), tf.uint8)

    # Zeros in front keep every slice below non-negative; no pattern starts with 0.
    tail = tf.concat([tf.zeros([len(pattern)], tf.uint8), tail], axis=0)
    num_windows = tf.size(tail) - len(pattern) + 1
    matches = tf.ones([num_windows], tf.bool)
    for index, byte in enumerate(pattern):
        matches &= tf.equal(tail[index : index + num_windows], byte)
    return tf.reduce_any(matches)


def _ends_with(image_bytes, suffix):
    length = tf.strings.length(image_bytes)
    start = tf.maximum(length - len(suffix), 0)
    return tf.equal(tf.strings.substr(image_bytes, start, len(suffix)), suffix)


def _bmp_is_complete(image_bytes):
    """Returns whether a BMP file is at least as long as the size in its header."""
    # Padding keeps substr in range for files shorter than the header.
    padded = tf.strings.join([image_bytes, b"\0" * (_BMP_SIZE_OFFSET + 4)])
    size_field = tf.strings.substr(padded, _BMP_SIZE_OFFSET, 4)
    declared_size = tf.io.decode_raw(size_field, tf.int32, little_endian=True)[0]
    return tf.strings.length(image_bytes) >= declared_size


def _starts_with(image_bytes, signature):
    return tf.equal(tf.strings.substr(image_bytes, 0, len(signature)), signature)


def check_image(image_bytes):
    """Checks that encoded image bytes look whole, without decoding them.

    Args:
        image_bytes: scalar string tensor with the file's content.

    Returns:
        `(is_valid, reason)`: a scalar bool tensor and a scalar string tensor
        that describes the problem, empty when `is_valid` is True.
    """
    is_jpeg = preprocessing.is_jpeg(image_bytes)
    is_png = _starts_with(image_bytes, _PNG_SIGNATURE)
    is_gif = _starts_with(image_bytes, _GIF_SIGNATURE)
    is_bmp = _starts_with(image_bytes, _BMP_SIGNATURE)

    # Only the check of the file's own format runs: the signatures exclude
    # each other.
    is_complete = tf.case(
        [
            (is_jpeg, lambda: _tail_contains(image_bytes, _JPEG_END)),
            (is_png, lambda: _tail_contains(image_bytes, _PNG_END)),
            (is_gif, lambda: _ends_with(image_bytes, _GIF_END)),
            (is_bmp, lambda: _bmp_is_complete(image_bytes)),
        ],
        default=lambda: tf.constant(True),
    )

    # Each test applies only when the ones before it passed.
    problems = (
        (tf.equal(tf.strings.length(image_bytes), 0), "empty file"),
        (~(is_jpeg | is_png | is_gif | is_bmp), "not a JPEG, PNG, GIF or BMP image"),
        (is_jpeg & ~is_complete, "truncated JPEG: no end-of-image marker"),
        (is_png & ~is_complete, "truncated PNG: no IEND chunk"),
        (is_gif & ~is_complete, "truncated GIF: no trailer"),
        (is_bmp & ~is_complete, "truncated BMP: shorter than its header says"),
    )
    reason = tf.constant("")
    for has_problem, message in reversed(problems):
        reason = tf.where(has_problem, tf.constant(message), reason)
    return tf.equal(reason, ""), reason


class BadImageLog:
    """Counts the image files an input pipeline skipped and logs their names.

    Each file counts once, however many epochs skip it again, so the count
    is the number of bad files seen so far. The first `max_named` files are
    named in a warning each; after that, a warning every `report_every` new
    files gives the running count. The names of all skipped files are kept,
    which costs memory only in proportion to the bad files. `record` runs
    inside `tf.data` threads, hence the lock.

    Attributes:
        description: what the log belongs to, such as "training split".
    """

    def __init__(self, description, max_named=10, report_every=100):
        self.description = description
        self._max_named = max_named
        self._report_every = report_every
        self._lock = threading.Lock()
        self._reason_by_file = {}

    @property
    def count(self):
        """Distinct image files skipped so far."""
        with self._lock:
            return len(self._reason_by_file)

    def reasons(self):
        """Returns a dict of reason to number of distinct files skipped for it."""
        with self._lock:
            return dict(collections.Counter(self._reason_by_file.values()))

    def record(self, name, reason):
        """Records one skip of the file `name`; `name` and `reason` are bytes or str."""
        name = _to_text(name)
        reason = _to_text(reason)
        with self._lock:
            is_new_file = name not in self._reason_by_file
            if is_new_file:
                self._reason_by_file[name] = reason
            count = len(self._reason_by_file)
        if not is_new_file:
            return

        if count <= self._max_named:
            logging.warning(
                "Skipped a bad image in the %s (%s): %s", self.description, reason, name
            )
        elif count % self._report_every == 0:
            logging.warning(
                "Skipped %d bad image files in the %s so far: %s",
                count, self.description, self.reasons(),
            )

    def record_tensors(self, name, reason):
        """Calls `record` from a graph; returns a scalar bool tensor (False)."""

        def record(name, reason):
            self.record(name.numpy(), reason.numpy())
            return False

        return tf.py_function(record, [name, reason], tf.bool)


def _to_text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
