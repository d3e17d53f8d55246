r"""Trains AlexNet on ImageNet-style data, evaluates it and exports it.

    python -m alexnet_tf.train --data_dir=DIR --model_dir=DIR
    python -m alexnet_tf.train --flagfile=flags/paper.cfg --data_dir=DIR --model_dir=DIR
    python -m alexnet_tf.train --dataset=tfrecord --data_dir=SHARDS --model_dir=DIR
    python -m alexnet_tf.train --dataset=tfds:imagenette --model_dir=DIR

By default DIR/train/<class>/<image> and DIR/validation/<class>/<image> (or
val/) hold the images. Running the same command again continues from the last
checkpoint.
"""

import dataclasses

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from alexnet_tf import distribution
from alexnet_tf import input_flags
from alexnet_tf import model as model_lib
from alexnet_tf import preprocessing
from alexnet_tf import training
from alexnet_tf.data import bad_images
from alexnet_tf.data import tfrecords

FLAGS = flags.FLAGS

input_flags.define_input_flags()
flags.DEFINE_string("data_dir", None, "Where the data set is. folder: the root of the tree, with "
                    "train/ and validation/ (or val/) holding one subfolder of images per class. "
                    "tfrecord: the folder of train-*-of-* and validation-*-of-* shards. tfds: the "
                    "TFDS data folder; default ~/tensorflow_datasets.")
flags.DEFINE_string("validation_labels", None, "folder only: a label file for a flat validation "
                    "folder, as ILSVRC-2012 ships it: one class name (synset) or class index "
                    "from 0 per line, for the images in sorted file-name order.")
flags.DEFINE_integer("label_offset", None, "tfrecord only: subtracted from each stored label. "
                     "Default: 0 for shards written by build_tfrecords (as their "
                     "dataset_info.json records), 1 for other shards, whose ImageNet labels the "
                     "common conversion scripts store as 1 to 1000.")
flags.DEFINE_string("class_names_file", None, "tfrecord only, for shards without the "
                    "dataset_info.json of build_tfrecords: a text file with one class name per "
                    "line, in label order, such as the 1000 sorted ImageNet synsets.")
flags.DEFINE_string("tfds_manual_dir", None, "tfds only: folder of manually downloaded files, "
                    "such as ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar for "
                    "tfds:imagenet2012.")
flags.DEFINE_string("model_dir", None, "Folder for checkpoints, TensorBoard logs and results. "
                    "An existing run in it is continued.")
flags.DEFINE_string("export_dir", None, "Folder for the serving SavedModel. Default: "
                    "MODEL_DIR/export.")
flags.DEFINE_bool("export", True, "Export the SavedModel after training.")

flags.DEFINE_integer("global_batch_size", 128, "Images per step over all replicas.", lower_bound=1)
flags.DEFINE_integer("num_epochs", 90, "Epochs to train in total, resumed epochs included.",
                     lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Training steps per epoch. Default: one pass "
                     "over the training images.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.01, "Learning rate before the first drop.",
                   lower_bound=0.0)
flags.DEFINE_list("lr_drop_epochs", ["30", "60", "80"], "Epochs at whose start the learning "
                  "rate is divided by 10, comma-separated; empty for a constant rate.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("weight_decay", 5e-4, "L2 weight decay added to the weights' gradients "
                   "before the momentum update; biases do not decay.", lower_bound=0.0)

flags.DEFINE_enum("variant", "paper", model_lib.VARIANTS, "Network: the paper's (two groups, "
                  "LRN), paper_single_tower (no groups), caffe (bvlc_alexnet's LRN) or "
                  "torchvision (64-192-384-256-256, no LRN). See alexnet_tf.model.AlexNet.")
flags.DEFINE_integer("image_size", None, "Side of the model's input, in pixels. Default: the "
                     "variant's, 227, or 224 for torchvision.",
                     lower_bound=min(model_lib.min_image_size(v) for v in model_lib.VARIANTS))
flags.DEFINE_integer("resize_size", preprocessing.DEFAULT_RESIZE_SIZE, "Shorter side, in "
                     "pixels, of the resized image that crops are taken from.", lower_bound=1)
flags.DEFINE_float("pca_stddev", preprocessing.DEFAULT_PCA_STDDEV, "Standard deviation of the "
                   "PCA colour augmentation coefficients; 0 turns it off.", lower_bound=0.0)
flags.DEFINE_float("dropout_rate", 0.5, "Dropout rate of fc6 and fc7.", lower_bound=0.0,
                   upper_bound=0.99)
flags.DEFINE_enum("initialization", None, model_lib.INITIALIZATIONS, "Weight "
                  "initialization: paper (N(0, 0.01), unit biases), glorot_uniform (zero "
                  "biases), caffe (bvlc_alexnet's N(0, 0.01) and N(0, 0.005), biases 0.1) or "
                  "pytorch (PyTorch's default). Default: the variant's own, pytorch for "
                  "torchvision, caffe for caffe, else paper.")
flags.DEFINE_integer("seed", None, "Seed of initialization, shuffling and augmentation.")

flags.DEFINE_enum("distribution_strategy", "mirrored", distribution.STRATEGIES, "mirrored: all "
                  "GPUs, or the CPU when there is none; one_device: the first GPU or the CPU.")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA. Ignored with "
                  "more than one replica.")
flags.DEFINE_integer("log_every_steps", 100, "Steps between throughput logs and TensorBoard "
                     "points.", lower_bound=1)

flags.mark_flags_as_required(["model_dir"])


@flags.multi_flags_validator(
    ["image_size", "resize_size"],
    message="--resize_size must be at least --image_size, because crops of "
    "image_size pixels are taken from an image whose shorter side is resize_size.",
)
def _check_resize_size(flag_values):
    # The variant's default image size is checked in training, once it is known.
    image_size = flag_values["image_size"]
    return image_size is None or flag_values["resize_size"] >= image_size


@flags.validator("lr_drop_epochs", message="--lr_drop_epochs must be positive, increasing "
                 "numbers, for example 30,60,80.")
def _check_lr_drop_epochs(values):
    try:
        epochs = [float(value) for value in values]
    except ValueError:
        return False
    return all(epoch > 0 for epoch in epochs) and epochs == sorted(epochs)


def config_from_flags():
    """Returns the `TrainConfig` that the command-line flags describe.

    Each field of `TrainConfig` has a flag of the same name.
    """
    values = {
        field.name: getattr(FLAGS, field.name)
        for field in dataclasses.fields(training.TrainConfig)
    }
    values["lr_drop_epochs"] = tuple(float(epoch) for epoch in FLAGS.lr_drop_epochs)
    return training.TrainConfig(**values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    config = config_from_flags()
    logging.info("TensorFlow %s. Settings: %s", tf.__version__, config)
    strategy = distribution.create_strategy(FLAGS.distribution_strategy)
    try:
        training.train_and_evaluate(config, strategy)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        # User errors: the message names the value and the fix; a traceback adds nothing.
        raise SystemExit(f"error: {error}") from None
    except tf.errors.OpError as error:
        message = _data_error_message(error)
        if message is None:
            raise
        raise SystemExit(f"error: {message}") from None


def _data_error_message(error):
    """Returns one line for a bad image file, damaged shard or bad label, else None."""
    # A failed tf.debugging.Assert prints each part in brackets:
    # "... [Invalid image file in ... (] [truncated JPEG...] [): ] [PATH] [. Remove ...]".
    start = error.message.find(bad_images.BAD_IMAGE)
    if start >= 0:
        return error.message[start:].splitlines()[0].replace("] [", "").rstrip("]")
    return tfrecords.read_error_message(error)


if __name__ == "__main__":
    app.run(main)
