r"""Evaluates a trained AlexNet on a validation split with the paper's ten crops or one.

    python -m alexnet_tf.evaluate --model_dir=DIR --data_dir=DIR
    python -m alexnet_tf.evaluate --saved_model=DIR/export --data_dir=DIR --crops=1
    python -m alexnet_tf.evaluate --model_dir=DIR --dataset=tfrecord --data_dir=SHARDS

`--crops=10` averages the softmax outputs of the four corner crops, the centre
crop and their mirror images, as Krizhevsky, Sutskever and Hinton (NIPS 2012,
section 4.1) do at test time. `--crops=1` scores the central crop, as the
validation during training does. The results are printed as a table like the
paper's, followed by the top-1 accuracy of each class (only the 10 worst when
there are more than 20 classes). They are also written to a JSON file and to
TensorBoard: top-1 and top-5 error, and the confusion matrix as an image.

The shuffle and cache flags of the input pipeline are accepted but change
nothing, because evaluation reads each image once, in order.
"""

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from alexnet_tf import evaluation
from alexnet_tf import input_flags
from alexnet_tf.data import sources

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Model directory of a training run: the model is rebuilt "
                    "from its model_config.json and a checkpoint.")
flags.DEFINE_string("checkpoint", None, "With --model_dir: the checkpoint prefix to evaluate, "
                    "such as MODEL_DIR/checkpoints/ckpt-5. Default: the latest.")
flags.DEFINE_string("saved_model", None, "Instead of --model_dir: the folder of a SavedModel "
                    "written by alexnet_tf.export or alexnet_tf.train.")
flags.DEFINE_enum("crops", "10", [str(crops) for crops in evaluation.CROP_CHOICES], "Crops per "
                  "image: 10 for the corner and centre crops and their mirror images, with "
                  "the softmax outputs averaged; 1 for the central crop.")
input_flags.define_input_flags()
input_flags.define_source_flags()
flags.DEFINE_integer("batch_size", 32, "Images per call of the model; with --crops=10 the "
                     "model sees 10 times as many crops.", lower_bound=1)
flags.DEFINE_string("output_json", None, "File for the results. Default: "
                    "MODEL_DIR/evaluation-10crops.json (or -1crop), or "
                    "SAVED_MODEL-eval/evaluation-10crops.json next to a SavedModel.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_json file.")
flags.DEFINE_string("summary_dir", None, "Folder for the TensorBoard summaries. Default: "
                    "MODEL_DIR/eval/10crops (or 1crop), or SAVED_MODEL-eval/10crops.")


@flags.multi_flags_validator(
    ["model_dir", "saved_model"],
    message="Pass exactly one of --model_dir and --saved_model.",
)
def _check_one_model(flag_values):
    return (flag_values["model_dir"] is None) != (flag_values["saved_model"] is None)


@flags.multi_flags_validator(
    ["checkpoint", "model_dir"],
    message="--checkpoint requires --model_dir, because a SavedModel contains a single set "
    "of weights.",
)
def _check_checkpoint(flag_values):
    return flag_values["checkpoint"] is None or flag_values["model_dir"] is not None


@flags.multi_flags_validator(
    ["data_dir", "dataset"],
    message="--data_dir is missing. Pass the folder that contains the data set. Only "
    "--dataset=tfds:NAME works without it.",
)
def _check_data_dir(flag_values):
    return (flag_values["data_dir"] is not None
            or flag_values["dataset"].startswith(sources.TFDS_PREFIX))


def _load_classifier(num_crops):
    if FLAGS.model_dir is not None:
        return evaluation.load_model_dir(FLAGS.model_dir, FLAGS.checkpoint)
    return evaluation.load_saved_model(FLAGS.saved_model, num_crops)


def run():
    """Runs the evaluation that the flags describe.

    Returns:
        `(results, output_json)`: the results dict and the file it was written to.
    """
    num_crops = int(FLAGS.crops)
    default_json, default_summary_dir = evaluation.default_output_paths(
        num_crops, model_dir=FLAGS.model_dir, saved_model_dir=FLAGS.saved_model
    )
    output_json = FLAGS.output_json or default_json
    # Checked before the model is loaded, so that a long evaluation does not end
    # in this error.
    evaluation.check_output_path(output_json, FLAGS.overwrite)

    classifier = _load_classifier(num_crops)
    source = evaluation.open_validation_source(
        FLAGS.dataset,
        FLAGS.data_dir,
        classifier.class_names,
        validation_labels=FLAGS.validation_labels,
        label_offset=FLAGS.label_offset,
        tfds_manual_dir=FLAGS.tfds_manual_dir,
    )
    results, confusion = evaluation.evaluate(
        classifier, source, num_crops, FLAGS.batch_size, input_flags.input_options_from_flags()
    )
    evaluation.write_results(
        results, confusion, output_json, FLAGS.summary_dir or default_summary_dir
    )
    return results, output_json


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    logging.info("TensorFlow %s.", tf.__version__)
    results, output_json = input_flags.run_reporting_errors(run)
    print(evaluation.format_results(results, output_json))


if __name__ == "__main__":
    app.run(main)
