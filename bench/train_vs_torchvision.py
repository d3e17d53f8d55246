r"""Compares alexnet_tf's training speed with torchvision's AlexNet on the same cores.

    bench/.venv/bin/python bench/train_vs_torchvision.py [--data_dir=/tmp/jpeg_tree]

runs three comparisons of training images per second:

- synthetic: the `torchvision` variant of alexnet_tf against torchvision's
  `alexnet()`, both trained with SGD (momentum 0.9, weight decay 5e-4) and
  cross-entropy on one random batch reused every step, in float32. alexnet_tf
  runs once as it trains by default, without XLA, and once with
  `--jit_compile`. Target: alexnet_tf / torchvision >= 1.1.
- bfloat16: alexnet_tf with `--dtype=bfloat16` against float32, on the same
  synthetic batch. Target >= 1.6 on a CPU with AVX512-BF16.
- jpeg (with --data_dir): both trained end to end on the JPEG tree of
  bench/make_jpeg_tree.py, alexnet_tf fed by its own input pipeline and
  torchvision by `ImageFolder` and `DataLoader` with the transforms of
  bench/input_vs_torchvision.py: resize, random crop, flip, PCA lighting.
  Target >= 1.3.

Each contender runs in a fresh process, so that no thread pool outlives its
measurement. The contenders take turns: every round runs each once, in reverse
order every other round, so that a slow spell on the machine does not hit only
one of them. alexnet_tf runs through `python -m alexnet_tf.benchmark
--mode=train`. The median and interquartile range of each contender are over
the timed windows of all rounds. Needs torch and torchvision: see
bench/README.md for the venv.
"""

import importlib.metadata
import itertools
import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging

import input_vs_torchvision

FLAGS = flags.FLAGS

SYNTHETIC = "synthetic"
BFLOAT16 = "bfloat16"
JPEG = "jpeg"
COMPARISONS = (SYNTHETIC, BFLOAT16, JPEG)

flags.DEFINE_list("comparisons", None, f"Comparisons to run, from {', '.join(COMPARISONS)}. "
                  "Default: synthetic and bfloat16, and jpeg with --data_dir.")
flags.DEFINE_string("data_dir", None, "Root of the JPEG tree of bench/make_jpeg_tree.py, "
                    "with train/<class>/<image>; the jpeg comparison needs it.")
flags.DEFINE_integer("batch_size", 128, "Images per training step, for every contender.",
                     lower_bound=1)
flags.DEFINE_integer("image_size", 224, "Side of the model's input, in pixels.", lower_bound=63)
flags.DEFINE_integer("num_classes", 1000, "Outputs of both models.", lower_bound=1)
flags.DEFINE_integer("resize_size", 256, "jpeg only: shorter side, in pixels, that crops are "
                     "taken from.", lower_bound=1)
flags.DEFINE_float("pca_stddev", 0.1, "jpeg only: standard deviation of the PCA lighting "
                   "coefficients.", lower_bound=0.0)
flags.DEFINE_integer("num_workers", None, "jpeg only: processes of the torchvision "
                     "DataLoader. Default: the number of cores.", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 3, "Training steps run before timing starts, in each "
                     "process.", lower_bound=0)
flags.DEFINE_integer("num_windows", 3, "Timed windows per process.", lower_bound=1)
flags.DEFINE_integer("window_steps", 3, "Training steps per timed window.", lower_bound=1)
flags.DEFINE_integer("rounds", 2, "Times each contender is measured, in turns with the others.",
                     lower_bound=1)
flags.DEFINE_string("output_json", None, "File to write every window's rate and the machine "
                    "to, as JSON. An existing file is an error unless --overwrite.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_json file.")
# Set by the parent process for each torchvision child; not for users.
flags.DEFINE_string("measure", None, "Run this one torchvision contender in this process.")
flags.DEFINE_string("result_file", None, "Where --measure writes its result as JSON.")

_SEED = 0
# Each comparison: the contenders it needs, in the order of a round, then the
# ratios it reports as (numerator, denominator, target or None).
_COMPARISONS = {
    SYNTHETIC: (
        ("alexnet_tf_synthetic", "alexnet_tf_synthetic_xla", "torchvision_synthetic"),
        (("alexnet_tf_synthetic", "torchvision_synthetic", 1.1),
         ("alexnet_tf_synthetic_xla", "torchvision_synthetic", 1.1)),
    ),
    BFLOAT16: (
        ("alexnet_tf_synthetic", "alexnet_tf_synthetic_bfloat16"),
        (("alexnet_tf_synthetic_bfloat16", "alexnet_tf_synthetic", 1.6),),
    ),
    JPEG: (
        ("alexnet_tf_jpeg", "torchvision_jpeg"),
        (("alexnet_tf_jpeg", "torchvision_jpeg", 1.3),),
    ),
}
# The benchmark flags of each alexnet_tf contender, besides the shared ones.
_ALEXNET_TF_FLAGS = {
    "alexnet_tf_synthetic": ["--data=synthetic"],
    "alexnet_tf_synthetic_xla": ["--data=synthetic", "--jit_compile"],
    "alexnet_tf_synthetic_bfloat16": ["--data=synthetic", "--dtype=bfloat16"],
    "alexnet_tf_jpeg": ["--data=real", "--dataset=folder"],
}
_LABELS = {
    "alexnet_tf_synthetic": "alexnet_tf, synthetic, float32",
    "alexnet_tf_synthetic_xla": "alexnet_tf, synthetic, float32, --jit_compile",
    "alexnet_tf_synthetic_bfloat16": "alexnet_tf, synthetic, --dtype=bfloat16",
    "torchvision_synthetic": "torchvision alexnet(), synthetic, float32",
    "alexnet_tf_jpeg": "alexnet_tf, JPEG tree, own input pipeline",
    "torchvision_jpeg": "torchvision alexnet(), JPEG tree, DataLoader",
}
# The flags that a result depends on, kept in --output_json.
_SETTINGS = ("comparisons", "data_dir", "batch_size", "image_size", "num_classes",
             "resize_size", "pca_stddev", "num_workers", "warmup_steps", "num_windows",
             "window_steps", "rounds")
# CPU features that the float32 and bfloat16 kernels of both libraries use when present.
_CPU_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "avx512_fp16")


# The torchvision contenders. Each runs in a child process and returns the
# dict of `benchmark.measure_images_per_second`.


def _torchvision_model_and_optimizer():
    """Returns torchvision's AlexNet in training mode and its SGD optimizer."""
    import torch
    import torchvision

    torch.manual_seed(_SEED)
    model = torchvision.models.alexnet(num_classes=FLAGS.num_classes)
    model.train()
    # NOTE: torch's weight_decay also decays the biases, which alexnet_tf's
    # optimizer leaves alone. Biases are 0.02% of the parameters.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return model, optimizer


def _torchvision_steps(batches):
    """Runs one training step per batch of `batches`, yielding after each."""
    import torch

    model, optimizer = _torchvision_model_and_optimizer()
    loss_function = torch.nn.CrossEntropyLoss()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(images), labels)
        loss.backward()
        optimizer.step()
        # alexnet_tf's timed steps also end by reading the loss back.
        loss.item()
        yield


def _set_torch_threads():
    import torch

    torch.set_num_threads(os.cpu_count())
    return {"torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}


def measure_torchvision_synthetic():
    import torch

    from alexnet_tf import benchmark

    threads = _set_torch_threads()
    generator = torch.Generator().manual_seed(_SEED)
    images = torch.randn(FLAGS.batch_size, 3, FLAGS.image_size, FLAGS.image_size,
                         generator=generator)
    labels = torch.randint(0, FLAGS.num_classes, (FLAGS.batch_size,), generator=generator)

    steps = _torchvision_steps(itertools.repeat((images, labels)))
    result = benchmark.measure_images_per_second(steps, **_measure_kwargs())
    result.update(threads)
    return result


def measure_torchvision_jpeg():
    from alexnet_tf import benchmark

    threads = _set_torch_threads()
    transform = input_vs_torchvision.torchvision_transform(
        FLAGS.image_size, FLAGS.resize_size, FLAGS.pca_stddev
    )
    num_steps = FLAGS.warmup_steps + FLAGS.num_windows * FLAGS.window_steps
    loader = input_vs_torchvision.torchvision_loader(
        os.path.join(FLAGS.data_dir, "train"), FLAGS.batch_size, num_steps, _num_workers(),
        transform,
    )

    # The loader's workers decode the JPEGs, so their CPU time counts too.
    result = benchmark.measure_images_per_second(
        _torchvision_steps(loader), cpu_clock=input_vs_torchvision.process_tree_cpu_seconds,
        **_measure_kwargs(),
    )
    result.update(threads, num_workers=_num_workers())
    return result


_TORCHVISION_CONTENDERS = {
    "torchvision_synthetic": measure_torchvision_synthetic,
    "torchvision_jpeg": measure_torchvision_jpeg,
}


def _measure_kwargs():
    return {
        "batch_size": FLAGS.batch_size,
        "warmup_batches": FLAGS.warmup_steps,
        "num_windows": FLAGS.num_windows,
        "window_batches": FLAGS.window_steps,
    }


def _num_workers():
    return FLAGS.num_workers or os.cpu_count()


# The parent process.


def _selected_comparisons():
    """Returns the comparisons to run, checking that each has what it needs."""
    if FLAGS.comparisons:
        names = list(FLAGS.comparisons)
        unknown = sorted(set(names) - set(COMPARISONS))
        if unknown:
            raise app.UsageError(f"Unknown --comparisons {unknown}; choose from "
                                 f"{list(COMPARISONS)}.")
    else:
        names = [SYNTHETIC, BFLOAT16] + ([JPEG] if FLAGS.data_dir else [])
    if JPEG in names:
        if not FLAGS.data_dir:
            raise app.UsageError("The jpeg comparison needs --data_dir: write a tree with "
                                 "bench/make_jpeg_tree.py and pass its folder.")
        _check_jpeg_tree()
    return names


def _check_jpeg_tree():
    """Raises a UsageError, before any measuring, if --data_dir has no train/ class folders."""
    train_dir = os.path.join(FLAGS.data_dir, "train")
    if not os.path.isdir(train_dir) or not any(entry.is_dir() for entry in os.scandir(train_dir)):
        raise app.UsageError(f"No class folders in {train_dir}. Write a tree with "
                             "bench/make_jpeg_tree.py and pass its folder as --data_dir.")


def _contenders(comparisons):
    """Returns every contender that the comparisons need, once each, in order."""
    names = []
    for comparison in comparisons:
        names += [name for name in _COMPARISONS[comparison][0] if name not in names]
    return names


def _alexnet_tf_command(name, result_file):
    command = [
        sys.executable, "-m", "alexnet_tf.benchmark", "--mode=train", "--variant=torchvision",
        f"--global_batch_size={FLAGS.batch_size}", f"--image_size={FLAGS.image_size}",
        f"--num_classes={FLAGS.num_classes}", f"--warmup_batches={FLAGS.warmup_steps}",
        f"--num_windows={FLAGS.num_windows}", f"--window_batches={FLAGS.window_steps}",
        f"--seed={_SEED}", f"--output_json={result_file}", *_ALEXNET_TF_FLAGS[name],
    ]
    if name == "alexnet_tf_jpeg":
        command += [f"--data_dir={FLAGS.data_dir}", f"--resize_size={FLAGS.resize_size}",
                    f"--pca_stddev={FLAGS.pca_stddev}"]
    return command


def _torchvision_command(name, result_file):
    command = [sys.executable, os.path.abspath(__file__), f"--measure={name}",
               f"--result_file={result_file}", f"--num_workers={_num_workers()}"]
    command += [
        f"--{flag}={getattr(FLAGS, flag)}"
        for flag in ("batch_size", "image_size", "num_classes", "resize_size", "pca_stddev",
                     "warmup_steps", "num_windows", "window_steps")
    ]
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    return command


def _run_child(name):
    """Measures one contender in a new process.

    Returns:
        Its result dict, or None if the process failed. The end of a failed
        process's log is logged here.
    """
    with tempfile.TemporaryDirectory() as temp_dir:
        result_file = os.path.join(temp_dir, "result.json")
        if name in _TORCHVISION_CONTENDERS:
            command = _torchvision_command(name, result_file)
        else:
            command = _alexnet_tf_command(name, result_file)

        logging.info("Measuring %s.", name)
        completed = subprocess.run(
            command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
            text=True,
        )
        if completed.returncode:
            logging.error("Measuring %s failed with exit code %d. The end of its log:\n%s",
                          name, completed.returncode, completed.stderr[-3000:])
            return None
        with open(result_file) as file:
            written = json.load(file)
    # alexnet_tf.benchmark writes the settings beside the result.
    return written.get("result", written)


def _measure_in_turns(names):
    """Runs every contender once per round.

    Returns:
        A dict from contender to the list of its results, one per round. A
        contender that failed once is measured no more and maps to None.
    """
    results = {name: [] for name in names}
    for round_index in range(FLAGS.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            if results[name] is None:
                continue
            result = _run_child(name)
            if result is None:
                results[name] = None
                continue
            logging.info("Round %d of %d, %s: median %.1f images/s.", round_index + 1,
                         FLAGS.rounds, name, result["median"])
            results[name].append(result)
    return results


def _pooled(results):
    """Summarizes the windows of all rounds of one contender as one result dict.

    Returns None for a contender that failed.
    """
    from alexnet_tf import benchmark

    if results is None:
        return None
    window_rates = [rate for result in results for rate in result["window_rates"]]
    pooled = benchmark.summarize_rates(window_rates)
    pooled["round_medians"] = [result["median"] for result in results]
    pooled["cpu_ms_per_image"] = sum(r["cpu_ms_per_image"] for r in results) / len(results)
    for key in ("torch_threads", "torch_interop_threads", "num_workers"):
        if key in results[0]:
            pooled[key] = results[0][key]
    return pooled


def machine_description():
    """Returns the CPU model, the core count and the CPU flags that matter here, as a dict."""
    model_name = "unknown"
    cpu_flags = set()
    with open("/proc/cpuinfo") as file:
        for line in file:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model_name = value.strip()
            elif key.strip() == "flags":
                cpu_flags = set(value.split())
    return {
        "cpu": model_name,
        "cores": os.cpu_count(),
        "cpu_flags": {name: name in cpu_flags for name in _CPU_FLAGS},
    }


def _versions():
    return {
        package: importlib.metadata.version(package)
        for package in ("tensorflow", "keras", "torch", "torchvision", "numpy", "pillow")
    }


def _ratios(comparisons, pooled):
    """Returns one dict per reported ratio: names, value, target and whether it is met.

    The value is None when either contender failed.
    """
    ratios = []
    for comparison in comparisons:
        for numerator, denominator, target in _COMPARISONS[comparison][1]:
            if pooled[numerator] is None or pooled[denominator] is None:
                ratios.append({"comparison": comparison, "numerator": numerator,
                               "denominator": denominator, "ratio": None, "target": target,
                               "met": False})
                continue
            value = pooled[numerator]["median"] / pooled[denominator]["median"]
            ratios.append({"comparison": comparison, "numerator": numerator,
                           "denominator": denominator, "ratio": value, "target": target,
                           "met": value >= target})
    return ratios


def _print_report(machine, versions, pooled, ratios):
    flags_text = ", ".join(f"{name} {'yes' if present else 'no'}"
                           for name, present in machine["cpu_flags"].items())
    print(f"\nMachine: {machine['cpu']}, {machine['cores']} cores; {flags_text}.")
    print(f"Versions: {versions}")
    print(f"Threads: torch.set_num_threads({machine['cores']}) in each torch process; "
          "TensorFlow's default pools (intra-op and inter-op 0, sized from the cores). "
          f"oneDNN in TensorFlow: TF_ENABLE_ONEDNN_OPTS="
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (on by default on x86)')}.")
    print(f"Training images per second, batch {FLAGS.batch_size}, {FLAGS.image_size}x"
          f"{FLAGS.image_size}, {FLAGS.num_classes} classes; per process {FLAGS.warmup_steps} "
          f"warm-up steps, then {FLAGS.num_windows} windows of {FLAGS.window_steps} steps; "
          f"{FLAGS.rounds} round(s). Median and quartiles over the windows of all rounds.")
    print(f"{'contender':<48} {'median':>7} {'IQR':>13} {'min':>7} {'max':>7} {'CPU ms':>6}  "
          "round medians")
    for name, result in pooled.items():
        if result is None:
            print(f"{_LABELS[name]:<48} failed: its log is above")
            continue
        iqr = f"{result['q1']:.1f}-{result['q3']:.1f}"
        rounds = ", ".join(f"{median:.1f}" for median in result["round_medians"])
        print(f"{_LABELS[name]:<48} {result['median']:7.1f} {iqr:>13} {result['min']:7.1f} "
              f"{result['max']:7.1f} {result['cpu_ms_per_image']:6.1f}  {rounds}")
    for ratio in ratios:
        if ratio["ratio"] is None:
            print(f"{ratio['comparison']}: {ratio['numerator']} / {ratio['denominator']}: "
                  "not measured, because a contender failed")
            continue
        verdict = "met" if ratio["met"] else "MISSED"
        print(f"{ratio['comparison']}: {ratio['numerator']} / {ratio['denominator']} = "
              f"{ratio['ratio']:.2f} (target >= {ratio['target']}: {verdict})")
    measured = [name for name in ("alexnet_tf_synthetic", "alexnet_tf_synthetic_xla")
                if pooled.get(name) is not None]
    if len(measured) == 2:
        best = max(measured, key=lambda name: pooled[name]["median"])
        print(f"Faster alexnet_tf setting here: {_LABELS[best]}. alexnet_tf.train compiles "
              "without XLA unless --jit_compile is passed.")


def _check_output_json():
    if FLAGS.output_json and os.path.exists(FLAGS.output_json) and not FLAGS.overwrite:
        raise app.UsageError(f"--output_json={FLAGS.output_json} exists. Pass --overwrite to "
                             "replace it, or another file name.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    if FLAGS.measure:
        result = _TORCHVISION_CONTENDERS[FLAGS.measure]()
        with open(FLAGS.result_file, "w") as file:
            json.dump(result, file)
        return

    _check_output_json()
    comparisons = _selected_comparisons()
    machine = machine_description()
    versions = _versions()
    results = _measure_in_turns(_contenders(comparisons))
    pooled = {name: _pooled(rounds) for name, rounds in results.items()}
    ratios = _ratios(comparisons, pooled)
    _print_report(machine, versions, pooled, ratios)

    if FLAGS.output_json:
        settings = {name: FLAGS[name].value for name in _SETTINGS}
        with open(FLAGS.output_json, "w" if FLAGS.overwrite else "x") as file:
            json.dump({"machine": machine, "versions": versions, "settings": settings,
                       "pooled": pooled, "rounds": results, "ratios": ratios}, file, indent=2)
    failed = [name for name, result in pooled.items() if result is None]
    if failed:
        raise SystemExit(f"error: measuring {', '.join(failed)} failed. The log is above.")


if __name__ == "__main__":
    app.run(main)
