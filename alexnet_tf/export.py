r"""Exports a training run's latest checkpoint as a serving SavedModel.

    python -m alexnet_tf.export --model_dir=DIR [--export_dir=DIR] [--checkpoint=PATH]

The SavedModel's `serving_default` signature takes encoded image bytes and
returns class probabilities and the top 5 classes; see `alexnet_tf.serving`.
"""

import os

from absl import app
from absl import flags

from alexnet_tf import serving

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Model directory of a training run.")
flags.DEFINE_string("export_dir", None, "Destination of the SavedModel. Default: "
                    "MODEL_DIR/export.")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to export, such as "
                    "MODEL_DIR/checkpoints/ckpt-5. Default: the latest.")
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    export_dir = FLAGS.export_dir or os.path.join(FLAGS.model_dir, "export")
    try:
        serving.export_from_checkpoint(FLAGS.model_dir, export_dir, FLAGS.checkpoint)
    except (FileNotFoundError, FileExistsError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    app.run(main)
