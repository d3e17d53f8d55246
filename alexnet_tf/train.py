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
from alexnet_tf import precision
from alexnet_tf import preemption
from alexnet_tf import preprocessing
from alexnet_tf import schedules
from alexnet_tf import training

FLAGS = flags.FLAGS

input_flags.define_input_flags()
input_flags.define_source_flags()
# List the shared data flags under --help too, not only under --helpfull.
flags.adopt_module_key_flags(input_flags)
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
flags.DEFINE_float("learning_rate", 0.01, "Peak learning rate for --learning_rate_batch_size "
                   "images per step, reached after the warm-up.", lower_bound=0.0)
flags.DEFINE_integer("learning_rate_batch_size", 128, "Global batch size that --learning_rate "
                     "is meant for. By the linear scaling rule the peak rate used is "
                     "learning_rate * global_batch_size / learning_rate_batch_size, so the "
                     "default, the paper's batch, leaves its recipe unchanged; 0 uses "
                     "--learning_rate for any batch.", lower_bound=0)
flags.DEFINE_enum("lr_schedule", schedules.STEP, schedules.SCHEDULES, "How the learning rate "
                  "changes after the warm-up. step: divided by 10 at each of --lr_drop_epochs. "
                  "cosine: a half cosine from the peak down to --final_learning_rate_fraction of "
                  "it at --num_epochs, so raising --num_epochs on resume raises the rates left. "
                  "plateau: divided by 10 when the validation top-1 error stops falling, as in "
                  "the paper (see --plateau_*). constant: the peak throughout.")
flags.DEFINE_float("warmup_epochs", 0.0, "Epochs of linear warm-up from near 0 to the peak "
                   "rate, for every --lr_schedule; fractions are allowed.", lower_bound=0.0)
flags.DEFINE_list("lr_drop_epochs", ["30", "60", "80"], "--lr_schedule=step only: epochs at "
                  "whose start the learning rate is divided by 10, comma-separated, after the "
                  "warm-up; empty for a constant rate.")
flags.DEFINE_float("final_learning_rate_fraction", 0.0, "--lr_schedule=cosine only: the rate "
                   "at the end, as a fraction of the peak.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("plateau_patience", 5, "--lr_schedule=plateau only: epochs in a row "
                     "without improvement of the validation top-1 error before the rate is "
                     "divided by 10; the count restarts after each drop.", lower_bound=1)
flags.DEFINE_float("plateau_min_delta", 0.001, "--lr_schedule=plateau only: the minimum "
                   "fall of the validation top-1 error below its best, as a fraction (0.001 is "
                   "0.1 points), that counts as an improvement.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("plateau_max_drops", 3, "--lr_schedule=plateau only: the maximum "
                     "number of drops; the paper's run had 3.", lower_bound=0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("weight_decay", 5e-4, "L2 weight decay added to the weights' gradients "
                   "before the momentum update; biases do not decay.", lower_bound=0.0)

flags.DEFINE_enum("variant", "paper", model_lib.VARIANTS, "Network: the paper's (two groups, "
                  "LRN), paper_single_tower (no groups), caffe (bvlc_alexnet's LRN) or "
                  "torchvision (64-192-384-256-256, no LRN). See alexnet_tf.model.AlexNet.")
flags.DEFINE_integer("image_size", None, "Side of the model's input, in pixels: at least 67, "
                     "or 63 for torchvision. Default: the variant's, 227, or 224 for "
                     "torchvision.",
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

flags.DEFINE_enum("distribution_strategy", distribution.MIRRORED, distribution.STRATEGIES,
                  "mirrored: one replica per GPU (or per --num_cpu_devices CPU device); "
                  "multi_worker_mirrored: the same on every machine of the cluster in the "
                  "TF_CONFIG environment variable; one_device: the first GPU or the CPU; tpu: "
                  "the TPU named by --tpu; default: TensorFlow's default placement.")
flags.DEFINE_integer("num_gpus", None, "GPUs to use on each machine. Default: all that "
                     "TensorFlow sees; 0 trains on the CPU.", lower_bound=0)
flags.DEFINE_integer("num_cpu_devices", 1, "Split the CPU into this many devices, one replica "
                     "each, when there is no GPU: shows a multi-replica run on a CPU-only "
                     "machine, without making it faster.", lower_bound=1)
flags.DEFINE_string("tpu", "local", "--distribution_strategy=tpu only: the TPU's name or "
                    "grpc:// address, or local on a TPU VM.")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA. Ignored, with "
                  "a warning, with more than one replica, where Keras' XLA step fails.")
flags.DEFINE_enum("dtype", precision.FLOAT32, precision.DTYPES, "Compute precision. bfloat16 "
                  "and float16 compute activations in 16 bits and keep float32 variables and "
                  "logits; float16 scales the loss dynamically. Checkpoints are float32 in "
                  "all three, so a run can continue in another dtype.")
flags.DEFINE_integer("steps_per_execution", 1, "Training steps per call of the compiled "
                     "training function. Ignored, with a warning, with more than one replica, "
                     "where Keras fails. Callbacks run only between calls, so "
                     "--log_every_steps and --steps_per_epoch must be multiples of it.",
                     lower_bound=1)
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


@flags.multi_flags_validator(
    ["warmup_epochs", "num_epochs"],
    message="--warmup_epochs must be below --num_epochs, so that the run reaches the peak rate.",
)
def _check_warmup_epochs(flag_values):
    return flag_values["warmup_epochs"] < flag_values["num_epochs"]


@flags.multi_flags_validator(
    ["lr_schedule", "lr_drop_epochs", "warmup_epochs"],
    message="--lr_drop_epochs must come after --warmup_epochs, or the peak rate is never used.",
)
def _check_drops_after_warmup(flag_values):
    if flag_values["lr_schedule"] != schedules.STEP or not flag_values["lr_drop_epochs"]:
        return True
    try:
        first_drop = float(flag_values["lr_drop_epochs"][0])
    except ValueError:
        return True  # _check_lr_drop_epochs reports it.
    return flag_values["warmup_epochs"] == 0 or first_drop > flag_values["warmup_epochs"]


# Flags that only one --lr_schedule reads.
_SCHEDULE_ONLY_FLAGS = {
    "lr_drop_epochs": schedules.STEP,
    "final_learning_rate_fraction": schedules.COSINE,
    "plateau_patience": schedules.PLATEAU,
    "plateau_min_delta": schedules.PLATEAU,
    "plateau_max_drops": schedules.PLATEAU,
}


def _warn_about_unused_schedule_flags():
    """Warns about flags, given on the command line or in a flagfile, that this schedule ignores."""
    for name, schedule in _SCHEDULE_ONLY_FLAGS.items():
        if FLAGS[name].present and FLAGS.lr_schedule != schedule:
            logging.warning(
                "--%s is ignored: it applies to --lr_schedule=%s, and this run has "
                "--lr_schedule=%s.", name, schedule, FLAGS.lr_schedule,
            )


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
    _warn_about_unused_schedule_flags()
    logging.info("TensorFlow %s. Settings: %s", tf.__version__, config)
    strategy = input_flags.run_reporting_errors(_create_strategy)
    try:
        input_flags.run_reporting_errors(training.train_and_evaluate, config, strategy)
    except preemption.Preempted as stop:
        # A clean stop: the scheduler that sent SIGTERM restarts the job.
        logging.warning("%s", stop)


def _create_strategy():
    return distribution.create_strategy(
        FLAGS.distribution_strategy, num_gpus=FLAGS.num_gpus, tpu_address=FLAGS.tpu,
        num_cpu_devices=FLAGS.num_cpu_devices,
    )


if __name__ == "__main__":
    app.run(main)
