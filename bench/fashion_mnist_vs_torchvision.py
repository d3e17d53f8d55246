r"""Trains the torchvision AlexNet on Fashion-MNIST here and in torchvision, and compares.

    bench/.venv/bin/python bench/fashion_mnist_vs_torchvision.py \
        --data_dir=data/fashion_mnist --work_dir=runs/fashion_mnist_vs_torchvision

trains the same network (alexnet_tf's `torchvision` variant and
`torchvision.models.alexnet`) with the same recipe on the same PNG files, one
framework after the other, each in its own process, and prints the test top-1
accuracy of both and their difference.

The recipe is torchvision's ImageNet reference: SGD, momentum 0.9, weight decay
1e-4, learning rate 0.01 for a batch of 256 images, divided by 10 at fixed
epochs. It is shortened to a few epochs at `--image_size` pixels, because 90
epochs at 224 pixels would take days on a CPU. Both sides use
alexnet_tf's augmentation, which is also what torchvision's transforms below
do: a random square crop of `image_size` from the image resized to a shorter
side of `resize_size`, a random horizontal flip, and the ImageNet mean and
standard deviation. Evaluation takes the central crop.

Three differences remain. PyTorch's SGD decays the biases too, while
alexnet_tf's optimizer decays only the weights. The random streams differ.
torchvision resizes with Pillow's antialiased bilinear filter, while alexnet_tf
crops first and resizes the window with TensorFlow's.

`--data_dir` is the folder tree that `make demo` writes
(`python -m alexnet_tf.idx_to_folders`). Needs the bench venv of
bench/README.md, which has torch and torchvision.
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, "Folder tree with train/<class>/ and validation/<class>/.")
flags.DEFINE_string("work_dir", None, "Folder for both runs' outputs; must not exist yet.")
flags.DEFINE_integer("image_size", 64, "Side of the crops, in pixels.", lower_bound=63)
flags.DEFINE_integer("resize_size", 72, "Shorter side the crops are taken from, in pixels.",
                     lower_bound=63)
flags.DEFINE_integer("num_epochs", 3, "Training epochs.", lower_bound=1)
flags.DEFINE_list("lr_drop_epochs", ["2"], "Epochs at whose start the rate is divided by 10.")
flags.DEFINE_integer("batch_size", 128, "Images per step.", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.01, "Rate for a batch of 256 images; scaled linearly "
                   "to --batch_size, as torchvision's reference recipe is.", lower_bound=0.0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay.")
flags.DEFINE_integer("seed", 1, "Seed of both runs.")
flags.DEFINE_list("frameworks", ["alexnet_tf", "torchvision"], "Which runs to do.")
# Set by the parent process for the torchvision child; not for users.
flags.DEFINE_string("result_file", None, "Where the torchvision child writes its result.")
flags.mark_flags_as_required(["data_dir", "work_dir"])

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_NUM_THREADS = os.cpu_count()


def _learning_rate():
    return FLAGS.learning_rate * FLAGS.batch_size / 256


def _run_alexnet_tf(model_dir):
    """Trains with `python -m alexnet_tf.train`; returns test top-1 and wall time."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [
        sys.executable, "-m", "alexnet_tf.train",
        f"--flagfile={os.path.join(repo_root, 'flags', 'torchvision.cfg')}",
        f"--data_dir={FLAGS.data_dir}",
        f"--model_dir={model_dir}",
        f"--image_size={FLAGS.image_size}",
        f"--resize_size={FLAGS.resize_size}",
        f"--num_epochs={FLAGS.num_epochs}",
        "--lr_schedule=step",
        f"--lr_drop_epochs={','.join(FLAGS.lr_drop_epochs)}",
        f"--global_batch_size={FLAGS.batch_size}",
        f"--learning_rate={_learning_rate()}",
        "--learning_rate_batch_size=0",
        f"--momentum={FLAGS.momentum}",
        f"--weight_decay={FLAGS.weight_decay}",
        f"--seed={FLAGS.seed}",
        "--pca_stddev=0",
        "--distribution_strategy=one_device",
        "--noexport",
        "--log_every_steps=100",
    ]
    logging.info("Running %s", " ".join(command))
    start = time.monotonic()
    subprocess.run(command, check=True, cwd=repo_root)
    seconds = time.monotonic() - start

    with open(os.path.join(model_dir, "eval_results.json")) as file:
        results = json.load(file)
    return {"top_1_accuracy": results["top_1_accuracy"], "seconds": seconds}


def _torch_loaders():
    import torch
    from torchvision import datasets
    from torchvision import transforms

    normalize = transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)
    train_transform = transforms.Compose([
        transforms.Resize(FLAGS.resize_size),
        transforms.RandomCrop(FLAGS.image_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        normalize,
    ])
    eval_transform = transforms.Compose([
        transforms.Resize(FLAGS.resize_size),
        transforms.CenterCrop(FLAGS.image_size),
        transforms.ToTensor(),
        normalize,
    ])

    def rgb_loader(path):
        return datasets.folder.pil_loader(path).convert("RGB")

    train = datasets.ImageFolder(
        os.path.join(FLAGS.data_dir, "train"), train_transform, loader=rgb_loader
    )
    test = datasets.ImageFolder(
        os.path.join(FLAGS.data_dir, "validation"), eval_transform, loader=rgb_loader
    )
    generator = torch.Generator().manual_seed(FLAGS.seed)
    train_loader = torch.utils.data.DataLoader(
        train, batch_size=FLAGS.batch_size, shuffle=True, drop_last=True,
        num_workers=1, generator=generator, persistent_workers=True,
    )
    test_loader = torch.utils.data.DataLoader(test, batch_size=256, num_workers=1)
    return train_loader, test_loader, len(train.classes)


def _train_torchvision():
    """Trains and tests `torchvision.models.alexnet` here; returns test top-1 and wall time."""
    import torch
    import torchvision

    start = time.monotonic()
    torch.manual_seed(FLAGS.seed)
    torch.set_num_threads(_NUM_THREADS)
    train_loader, test_loader, num_classes = _torch_loaders()
    model = torchvision.models.alexnet(num_classes=num_classes)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=_learning_rate(), momentum=FLAGS.momentum,
        weight_decay=FLAGS.weight_decay,
    )
    milestones = [int(float(epoch)) for epoch in FLAGS.lr_drop_epochs]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    loss_function = torch.nn.CrossEntropyLoss()

    for epoch in range(FLAGS.num_epochs):
        model.train()
        for step, (images, labels) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = loss_function(model(images), labels)
            loss.backward()
            optimizer.step()
            if step % 100 == 0:
                logging.info("torchvision epoch %d step %d loss %.4f", epoch, step, loss.item())
        scheduler.step()

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in test_loader:
            correct += (model(images).argmax(dim=1) == labels).sum().item()
            total += labels.numel()
    return {"top_1_accuracy": correct / total, "seconds": time.monotonic() - start}


def _run_torchvision():
    """Runs `_train_torchvision` in a child process, so TensorFlow and torch never share one."""
    result_file = os.path.join(FLAGS.work_dir, "torchvision.json")
    command = [sys.executable, os.path.abspath(__file__), f"--result_file={result_file}"]
    command += [arg for arg in sys.argv[1:] if not arg.startswith("--result_file")]
    subprocess.run(command, check=True)
    with open(result_file) as file:
        return json.load(file)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")

    if FLAGS.result_file:
        with open(FLAGS.result_file, "w") as file:
            json.dump(_train_torchvision(), file)
        return

    if not os.path.isdir(os.path.join(FLAGS.data_dir, "train")):
        raise SystemExit(
            f"error: {FLAGS.data_dir!r} has no train/ folder. Write it with `make demo` or "
            "python -m alexnet_tf.idx_to_folders."
        )
    if os.path.exists(FLAGS.work_dir):
        raise SystemExit(f"error: {FLAGS.work_dir!r} exists. Pass a new --work_dir.")
    os.makedirs(FLAGS.work_dir)

    results = {}
    if "alexnet_tf" in FLAGS.frameworks:
        results["alexnet_tf"] = _run_alexnet_tf(os.path.join(FLAGS.work_dir, "alexnet_tf"))
    if "torchvision" in FLAGS.frameworks:
        results["torchvision"] = _run_torchvision()
    with open(os.path.join(FLAGS.work_dir, "results.json"), "w") as file:
        json.dump(results, file, indent=2)

    for name, result in results.items():
        print(f"{name}: test top-1 {100 * result['top_1_accuracy']:.2f}% after "
              f"{FLAGS.num_epochs} epochs, {result['seconds'] / 60:.1f} min in all")
    if len(results) == 2:
        difference = 100 * (
            results["alexnet_tf"]["top_1_accuracy"] - results["torchvision"]["top_1_accuracy"]
        )
        print(f"alexnet_tf - torchvision: {difference:+.2f} points (target: within 1 point)")


if __name__ == "__main__":
    app.run(main)
