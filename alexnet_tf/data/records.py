"""The records every data source yields, and the `Source` that yields them.

A record is a dict of three scalar tensors:

- `IMAGE`: tf.string, the encoded image file, undecoded, so that every source
  goes through the same decoding and augmentation.
- `LABEL`: tf.int32, the class index into `Source.class_names`, from 0.
- `NAME`: tf.string, what names the image in logs and errors: a file path for
  folder trees, the stored file name for TFRecords and TFDS.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

IMAGE = "image"
LABEL = "label"
NAME = "name"


def make_record(image_bytes, label, name):
    """Returns a record dict, casting the label to int32."""
    return {IMAGE: image_bytes, LABEL: tf.cast(label, tf.int32), NAME: name}


@dataclasses.dataclass(frozen=True)
class Source:
    """One split of a data set, ready to be read by an input pipeline.

    Attributes:
        description: names the split and where it is, for logs and errors,
            for example "TFRecord shards /data/train-*".
        class_names: names of the classes, indexed by label.
        num_examples: number of records in the split, or None when counting
            them would mean reading the whole split.
        read: `read(input_context=None, shuffle=False, seed=None)` returns a
            `tf.data.Dataset` of records, read once (not repeated). With an
            input context, each of its input pipelines gets a disjoint part,
            and together they get every record exactly once. With
            `shuffle=True`, the order of files changes each time the dataset
            is iterated, drawn from `seed`.
        fully_shuffled: whether `read(shuffle=True)` shuffles single records
            rather than whole files, so that no shuffle buffer is needed.
    """

    description: str
    class_names: tuple
    num_examples: Optional[int]
    read: Callable[..., tf.data.Dataset]
    fully_shuffled: bool = False

    @property
    def num_classes(self):
        return len(self.class_names)
