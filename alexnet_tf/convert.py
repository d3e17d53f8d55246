r"""Converts published AlexNet weights into a model directory of this project.

    python -m alexnet_tf.convert --weights=alexnet-owt-7be5be79.pth --format=torchvision \
        --output_dir=runs/torchvision_alexnet --class_names_file=synsets.txt
    python -m alexnet_tf.convert --weights=bvlc_alexnet.npz --format=caffe \
        --output_dir=runs/bvlc_alexnet --class_names_file=synsets.txt
    python -m alexnet_tf.export --model_dir=runs/bvlc_alexnet

The output directory contains what a training run writes: `model_config.json`
and a checkpoint `checkpoints/ckpt-0` with the weights, a fresh optimizer and
epoch 0. `alexnet_tf.export` and `alexnet_tf.predict` use it as they use a run,
and `alexnet_tf.train` with the same classes fine-tunes it from epoch 0.

Weight files:

- `--format=torchvision`: the state dict of `torchvision.models.alexnet`, with
  keys `features.{0,3,6,8,10}.{weight,bias}` and
  `classifier.{1,4,6}.{weight,bias}`, into the `torchvision` variant. Either the
  `.pth` file itself, which needs PyTorch (`pip install torch`), or the same
  state dict as `.npz`:

      state_dict = torch.load("alexnet-owt-7be5be79.pth")
      numpy.savez("alexnet.npz", **{k: v.numpy() for k, v in state_dict.items()})

- `--format=caffe`: the blobs of Caffe's bvlc_alexnet as `.npz`, with keys
  `conv1_weight`, `conv1_bias`, ..., `fc8_weight`, `fc8_bias`, in Caffe's
  layout, into the `caffe` variant. These lines of pycaffe write it (NOTE: not
  run here, because pycaffe is not installed with this project):

      import caffe, numpy
      net = caffe.Net("deploy.prototxt", caffe.TEST, weights="bvlc_alexnet.caffemodel")
      numpy.savez("bvlc_alexnet.npz", **{
          f"{layer}_{kind}": net.params[layer][index].data
          for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
          for index, kind in enumerate(("weight", "bias"))})

The conversion:

- Convolution kernels go from (out, in / groups, height, width) to Keras'
  (height, width, in / groups, out). Caffe splits the channels of a grouped
  convolution into consecutive halves, as `layers.GroupedConv2D` does, so
  the grouped layers need nothing more.
- Fully connected kernels go from (out, in) to Keras' (in, out). Both
  frameworks flatten pool5's output in channel, row, column order, but Keras
  flattens in row, column, channel order, so fc6's inputs are permuted.
- This project's models take RGB pixels on a 0-255 scale minus
  `preprocessing.IMAGENET_RGB_MEAN`. torchvision's take
  `(pixels / 255 - mean) / std` with its own mean and std. The torchvision
  variant's first layer divides by `255 * std`, so conv1's kernel maps
  unchanged and its bias absorbs the difference of the two means (at most
  0.5 on the 0-255 scale). That is
  exact except next to the image border, where torchvision's zero padding
  stands for its mean pixel and this model's for this project's. Caffe's
  take BGR pixels on a 0-255 scale minus a mean, so conv1's input channels
  are reversed. NOTE: bvlc_alexnet was trained with a per-pixel mean image,
  which differs from this project's per-channel means by a few units, so
  results can differ slightly from Caffe's.

Both label ImageNet's 1000 classes in the sorted order of their WordNet ids
(n01440764 first), the order of this project's class folders, so pass
`--class_names_file` with the sorted synsets to evaluate them on an ImageNet
folder tree.
"""

import os
import pickle

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from alexnet_tf import model as model_lib
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import optimizer as optimizer_lib
from alexnet_tf import preprocessing
from alexnet_tf import schedules
from alexnet_tf.data import sources

FORMATS = ("torchvision", "caffe")
LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")

# The module names of torchvision's AlexNet, in its `features` and
# `classifier` sequences, which prefix the state dict's keys.
_TORCHVISION_MODULES = {
    "conv1": "features.0",
    "conv2": "features.3",
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}

_TORCH_EXTENSIONS = (".pth", ".pt")
_DROPOUT_RATE = 0.5  # Both networks were trained with dropout 0.5 in fc6 and fc7.


def weight_key(weights_format, layer_name, kind):
    """Returns the key of a layer's `"weight"` or `"bias"` in a weight file."""
    if weights_format == "torchvision":
        return f"{_TORCHVISION_MODULES[layer_name]}.{kind}"
    return f"{layer_name}_{kind}"


def _check_format(weights_format):
    if weights_format not in FORMATS:
        raise ValueError(
            f"Expected weights_format in {FORMATS}. Received: weights_format={weights_format!r}"
        )


def read_weights(path, weights_format):
    """Reads a weight file into a dict of float32 NumPy arrays.

    Args:
        path: a `.npz` file, or for torchvision also a `.pth` or `.pt` file.
        weights_format: an entry of `FORMATS`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file type does not fit the format.
        ImportError: for a `.pth` file when PyTorch is not installed.
    """
    _check_format(weights_format)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weight file not found: {path!r}. Pass an existing --weights.")

    extension = os.path.splitext(path)[1].lower()
    if extension == ".npz":
        arrays = _read_npz(path)
    elif extension in _TORCH_EXTENSIONS and weights_format == "torchvision":
        arrays = _read_torch_state_dict(path)
    else:
        accepted = ".npz, .pth or .pt" if weights_format == "torchvision" else ".npz"
        raise ValueError(
            f"Unsupported file type {extension or '(none)'!r} of {path!r} for "
            f"--format={weights_format}: expected {accepted}. See "
            "`python -m alexnet_tf.convert --helpfull` for how to write an .npz file."
        )
    return {key: np.asarray(value, np.float32) for key, value in arrays.items()}


def _read_npz(path):
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _read_torch_state_dict(path):
    """Reads a PyTorch state dict, or the `"model"` entry of a training checkpoint."""
    try:
        import torch  # PyTorch is optional: only .pth files need it.
    except ImportError as error:
        raise ImportError(
            f"Reading {path!r} needs PyTorch, which is not installed. Run "
            "'pip install torch', or save the state dict as .npz where PyTorch is "
            "installed: numpy.savez(path, **{k: v.numpy() for k, v in state_dict.items()})"
        ) from error

    # NOTE: the tests do not install PyTorch and cover the same state dict
    # saved as .npz. This path was checked by hand with torch 2.14.1 only.
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        raise ValueError(
            f"Failed to read {path!r} as a PyTorch state dict ({error}). Pass the "
            "file that torchvision downloads, or a state dict saved with torch.save."
        ) from error
    # torchvision's reference training script saves {"model": state_dict, ...}.
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        logging.info("Reading the 'model' entry of the checkpoint %s.", path)
        state_dict = state_dict["model"]
    return {key: value.detach().cpu().float().numpy() for key, value in state_dict.items()}


def _expected_keys(weights_format):
    return [
        weight_key(weights_format, layer_name, kind)
        for layer_name in LAYER_NAMES
        for kind in ("weight", "bias")
    ]


def _check_keys(arrays, weights_format):
    expected = _expected_keys(weights_format)
    missing = [key for key in expected if key not in arrays]
    unexpected = sorted(set(arrays) - set(expected))
    if not missing and not unexpected:
        return

    message = (
        f"The weights do not match {weights_format}'s AlexNet. Missing keys: "
        f"{missing or 'none'}. Unexpected keys: {unexpected or 'none'}."
    )
    for other_format in FORMATS:
        if other_format != weights_format and set(arrays) == set(_expected_keys(other_format)):
            message += f" These are {other_format}'s keys: pass --format={other_format}."
    raise ValueError(message)


def _num_classes(arrays, weights_format):
    key = weight_key(weights_format, "fc8", "bias")
    if arrays[key].ndim != 1:
        raise ValueError(
            f"{key}: expected shape (num_classes,), found {arrays[key].shape}."
        )
    return arrays[key].shape[0]


def _source_shape(keras_shape):
    """Returns the shape of a Keras kernel or bias in PyTorch's and Caffe's layout."""
    if len(keras_shape) == 4:
        height, width, in_channels, out_channels = keras_shape
        return (out_channels, in_channels, height, width)
    return tuple(reversed(keras_shape))


def _check_shapes(arrays, model, weights_format):
    for layer_name in LAYER_NAMES:
        layer = model.get_layer(layer_name)
        for kind, variable in (("weight", layer.kernel), ("bias", layer.bias)):
            key = weight_key(weights_format, layer_name, kind)
            expected = _source_shape(tuple(variable.shape))
            if arrays[key].shape != expected:
                raise ValueError(
                    f"{key}: expected shape {expected}, found {arrays[key].shape}. "
                    f"Pass the weights of {weights_format}'s AlexNet."
                )


def _keras_kernel(weight, flattened_shape=None):
    """Turns a PyTorch or Caffe weight into a Keras kernel.

    Args:
        weight: a convolution weight (out, in, height, width) or a fully
            connected weight (out, in).
        flattened_shape: for fc6, the (height, width, channels) of the feature
            map whose flattened values are its inputs.
    """
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)
    if flattened_shape is not None:
        height, width, channels = flattened_shape
        # Inputs in (channel, row, column) order become (row, column, channel).
        weight = weight.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
        weight = weight.reshape(weight.shape[0], -1)
    return weight.T


def _fold_input_convention(kernel, bias, weights_format):
    """Makes conv1 take this project's inputs instead of the source framework's.

    Args:
        kernel: conv1's Keras kernel, (height, width, 3, filters).
        bias: conv1's bias, (filters,).
        weights_format: an entry of `FORMATS`.

    Returns:
        The new (kernel, bias).
    """
    if weights_format == "caffe":
        return kernel[:, :, ::-1, :], bias  # BGR input channels become RGB.

    # The variant's input_scale layer turns this project's input y = x - M
    # into y / (255 s), while torchvision's input is (x / 255 - m) / s, which
    # is larger by (M - 255 m) / (255 s). conv1 is linear, so its bias takes
    # the difference.
    stddev = 255 * np.array(model_lib.TORCHVISION_RGB_STDDEV, np.float64)
    mean_difference = np.array(preprocessing.IMAGENET_RGB_MEAN) - 255 * np.array(
        model_lib.TORCHVISION_RGB_MEAN
    )
    folded_bias = bias + np.einsum("hwco,c->o", kernel, mean_difference / stddev)
    return kernel, folded_bias.astype(np.float32)


def _check_image_size(image_size, weights_format):
    if weights_format != "caffe" or model_lib.output_size(image_size, "caffe") == 6:
        return
    sizes = [size for size in range(1, 1000) if model_lib.output_size(size, "caffe") == 6]
    raise ValueError(
        f"Caffe's fc6 takes a 6x6 pool5 output, which needs image_size from "
        f"{sizes[0]} to {sizes[-1]}. Received: image_size={image_size}"
    )


def build_model(arrays, weights_format, image_size=None):
    """Builds the matching variant and loads converted weights into it.

    Args:
        arrays: dict of NumPy arrays, as `read_weights` returns.
        weights_format: an entry of `FORMATS`, which is also the variant.
        image_size: input side in pixels; None for the variant's default.
            torchvision's adaptive pooling takes any size from 63 pixels, and
            Caffe's weights need a 6x6 pool5 output, so 227 to 258 pixels.

    Returns:
        A `keras.Model` of variant `weights_format` with the converted weights.

    Raises:
        ValueError: if a key is missing or unexpected, or an array's shape
            differs from the variant's; the message names the key and both
            shapes.
    """
    _check_format(weights_format)
    _check_keys(arrays, weights_format)
    variant = weights_format
    if image_size is None:
        image_size = model_lib.default_image_size(variant)
    _check_image_size(image_size, weights_format)

    model = model_lib.AlexNet(
        num_classes=_num_classes(arrays, weights_format),
        image_size=image_size,
        dropout_rate=_DROPOUT_RATE,
        variant=variant,
    )
    _check_shapes(arrays, model, weights_format)

    flattened_shape = tuple(model.get_layer("flatten").input.shape[1:])
    for layer_name in LAYER_NAMES:
        weight = arrays[weight_key(weights_format, layer_name, "weight")]
        bias = arrays[weight_key(weights_format, layer_name, "bias")]
        kernel = _keras_kernel(weight, flattened_shape if layer_name == "fc6" else None)
        if layer_name == "conv1":
            kernel, bias = _fold_input_convention(kernel, bias, weights_format)
        model.get_layer(layer_name).set_weights([kernel, bias])
    return model


def _default_class_names(num_classes):
    logging.warning(
        "No --class_names_file: naming the %d classes class_0000 to class_%04d. Pass "
        "the class names in label order, such as ImageNet's sorted synsets, to "
        "evaluate on a data set or get readable predictions.", num_classes, num_classes - 1,
    )
    return [f"class_{index:04d}" for index in range(num_classes)]


def _check_output_dir(output_dir):
    if os.path.isfile(output_dir):
        raise FileExistsError(f"Output path {output_dir!r} is a file. Pass a new --output_dir.")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(
            f"Output directory {output_dir!r} is not empty. Pass a new or empty "
            "--output_dir; nothing in an existing one is replaced."
        )


def write_model_dir(model, output_dir, model_config):
    """Writes `model` and its config as a run's model directory at epoch 0.

    The checkpoint contains a fresh optimizer as well, so that
    `alexnet_tf.train` can continue from it as from its own checkpoints. The
    config is written last, so a directory with a config is complete.
    """
    # Training's optimizer always follows a schedule, which keeps no learning
    # rate variable, so the checkpoint's optimizer variables line up with it.
    schedule = schedules.create_schedule("constant", 0.01, steps_per_epoch=1, num_epochs=1)
    optimizer = optimizer_lib.MomentumWithWeightDecay(learning_rate=schedule)
    optimizer.build(model.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    manager = model_dir_lib.create_checkpoint_manager(output_dir, model, optimizer, epoch)
    path = manager.save(checkpoint_number=0)
    model_dir_lib.save_or_check_model_config(output_dir, model_config)
    logging.info("Wrote %s and the model config to %s.", path, output_dir)


def convert(weights_path, weights_format, output_dir, class_names_file=None, image_size=None):
    """Converts a weight file into a model directory that export and predict use.

    Args:
        weights_path: the weight file, see `read_weights`.
        weights_format: an entry of `FORMATS`.
        output_dir: the model directory to create; it must be new or empty.
        class_names_file: text file with one class name per line in label
            order, or None for `class_0000`, `class_0001`, ...
        image_size: input side in pixels, see `build_model`.

    Returns:
        The model config written to `output_dir`.

    Raises:
        FileExistsError: if `output_dir` is a file or not empty.
        FileNotFoundError: if a file is missing.
        ValueError: if the weights or class names do not fit the format.
    """
    _check_format(weights_format)
    _check_output_dir(output_dir)
    arrays = read_weights(weights_path, weights_format)
    _check_keys(arrays, weights_format)

    num_classes = _num_classes(arrays, weights_format)
    if class_names_file:
        class_names = list(sources.read_class_names_file(class_names_file))
    else:
        class_names = _default_class_names(num_classes)
    if len(class_names) != num_classes:
        raise ValueError(
            f"{class_names_file!r} lists {len(class_names)} class names, but the "
            f"weights have {num_classes} classes. Pass a file with one name per class."
        )

    model = build_model(arrays, weights_format, image_size)

    model_config = {
        "class_names": class_names,
        "image_size": model.input_shape[1],
        "resize_size": preprocessing.DEFAULT_RESIZE_SIZE,
        "dropout_rate": _DROPOUT_RATE,
        "variant": weights_format,
        "converted_from": {"weights": os.path.abspath(weights_path), "format": weights_format},
    }
    write_model_dir(model, output_dir, model_config)
    return model_config


def _define_flags():
    # Defined only when run as a program, so that importing this module next
    # to alexnet_tf.train does not define --class_names_file twice.
    flags.DEFINE_string("weights", None, "Weight file: a torchvision state dict (.pth, .pt or "
                        ".npz) or Caffe blobs (.npz); see the module docstring.")
    flags.DEFINE_enum("format", None, FORMATS, "Where the weights come from; also the "
                      "variant of the converted model.")
    flags.DEFINE_string("output_dir", None, "Model directory to create; must be new or empty.")
    flags.DEFINE_string("class_names_file", None, "Text file with one class name per line, in "
                        "label order, such as ImageNet's 1000 sorted synsets. Default: "
                        "class_0000, class_0001, ...")
    flags.mark_flags_as_required(["weights", "format", "output_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS

    try:
        model_config = convert(
            FLAGS.weights, FLAGS.format, FLAGS.output_dir, FLAGS.class_names_file
        )
    except (FileNotFoundError, FileExistsError, ImportError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(
        f"Converted {FLAGS.weights} into {FLAGS.output_dir}: variant {model_config['variant']}, "
        f"{len(model_config['class_names'])} classes, {model_config['image_size']}-pixel input. "
        f"Export it with: python -m alexnet_tf.export --model_dir={FLAGS.output_dir}"
    )


if __name__ == "__main__":
    _define_flags()
    app.run(main)
