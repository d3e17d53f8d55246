"""Tests of strategy choice, replica equivalence, preemption and multi-worker training."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from unittest import mock

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import distribution
from alexnet_tf import preemption
from alexnet_tf import training
import multi_worker_input_test
import sample_images
import training_test

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"


class CreateStrategyTest(tf.test.TestCase):

    def test_mirrored_uses_the_logical_cpus(self):
        # conftest.py splits the CPU into two devices.
        strategy = distribution.create_strategy(distribution.MIRRORED)
        self.assertIsInstance(strategy, tf.distribute.MirroredStrategy)
        self.assertEqual(strategy.num_replicas_in_sync, 2)

    def test_one_device(self):
        strategy = distribution.create_strategy(distribution.ONE_DEVICE)
        self.assertEqual(strategy.num_replicas_in_sync, 1)
        self.assertTrue(distribution.is_chief(strategy))
        self.assertFalse(distribution.is_multi_worker(strategy))

    def test_default(self):
        strategy = distribution.create_strategy(distribution.DEFAULT)
        self.assertIs(strategy, tf.distribute.get_strategy())

    def test_cpu_devices_need_mirrored(self):
        with self.assertRaisesRegex(ValueError, "--num_cpu_devices=2 applies only to "
                                    "--distribution_strategy=mirrored"):
            distribution.create_strategy(distribution.ONE_DEVICE, num_cpu_devices=2)

    def test_tf_config_ignored_warning(self):
        with mock.patch.dict(os.environ, {"TF_CONFIG": "{}"}):
            with self.assertLogs(logger="absl", level="WARNING") as logs:
                distribution.create_strategy(distribution.ONE_DEVICE)

        self.assertIn("TF_CONFIG is set, but --distribution_strategy=one_device ignores it",
                      "\n".join(logs.output))

    def test_unknown_name(self):
        with self.assertRaisesRegex(ValueError, "'horovod'"):
            distribution.create_strategy("horovod")

    def test_more_gpus_than_the_machine_has(self):
        with self.assertRaisesRegex(ValueError, r"--num_gpus=2, but .* 0 GPU.*--num_gpus=0"):
            distribution.create_strategy(distribution.MIRRORED, num_gpus=2)

    def test_split_after_start(self):
        with self.assertRaisesRegex(ValueError, "already started"):
            distribution.split_cpu(3)

    def test_batch_must_divide(self):
        with self.assertRaisesRegex(ValueError, "10 does not divide by the 4 replicas"):
            distribution.per_replica_batch_size(10, 4)


class TfConfigTest(tf.test.TestCase):

    def _create(self, tf_config):
        environment = {} if tf_config is None else {"TF_CONFIG": tf_config}
        with mock.patch.dict(os.environ, environment, clear=False):
            if tf_config is None:
                os.environ.pop("TF_CONFIG", None)
            return distribution.create_strategy(distribution.MULTI_WORKER_MIRRORED)

    def test_missing(self):
        with self.assertRaisesRegex(ValueError, "TF_CONFIG environment variable, which is not set"):
            self._create(None)

    def test_not_json(self):
        with self.assertRaisesRegex(ValueError, "not a cluster description: 'workers: 2'"):
            self._create("workers: 2")

    def test_task_outside_the_cluster(self):
        tf_config = json.dumps(
            {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}
        )
        with self.assertRaisesRegex(ValueError, "names task 'worker' 1, which its cluster"):
            self._create(tf_config)


def _fixed_batches(global_batch_size, num_steps, image_size=67, num_classes=3):
    """Returns `num_steps` global batches of random images as one repeatable dataset."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-100, 100, (num_steps * global_batch_size, image_size, image_size, 3))
    labels = rng.integers(0, num_classes, num_steps * global_batch_size)
    return tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), labels.astype(np.int32))
    ).batch(global_batch_size)


class ReplicaEquivalenceTest(tf.test.TestCase):

    def _losses_after_steps(self, strategy, num_steps=3, global_batch_size=8, num_classes=3):
        # Dropout is off: its masks depend on how the batch is split.
        config = training_test.small_config(
            "unused", "unused", dropout_rate=0.0, learning_rate=0.001, steps_per_epoch=num_steps
        )
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model, _ = training._build_and_compile(
                config, num_classes, num_steps, jit_compile=False
            )
        dataset = strategy.experimental_distribute_dataset(
            _fixed_batches(global_batch_size, num_steps, num_classes=num_classes)
        )
        history = model.fit(dataset, epochs=1, steps_per_epoch=num_steps, verbose=0)
        evaluation = model.evaluate(
            _fixed_batches(global_batch_size, 1, num_classes=num_classes), verbose=0
        )
        return history.history["loss"][0], evaluation[0], model.get_layer("fc8").kernel.numpy()

    def test_two_replicas_match_one_device(self):
        single = self._losses_after_steps(tf.distribute.OneDeviceStrategy("/cpu:0"))
        mirrored = self._losses_after_steps(distribution.mirrored_strategy(["/cpu:0", "/cpu:1"]))

        # Splitting a batch only reorders float32 sums: the relative
        # differences stay near float32 rounding after three steps.
        self.assertAllClose(single[0], mirrored[0], rtol=1e-4)
        self.assertAllClose(single[1], mirrored[1], rtol=1e-4)
        self.assertAllClose(single[2], mirrored[2], rtol=1e-3, atol=1e-6)
        self.assertNotAllClose(single[2], np.zeros_like(single[2]))

    def test_second_strategy_trains_another_model_size(self):
        # With TensorFlow's own MirroredStrategy the second run fails with
        # "Shape mismatch in the collective instance".
        devices = ["/cpu:0", "/cpu:1"]
        three = self._losses_after_steps(distribution.mirrored_strategy(devices), num_steps=1)
        five = self._losses_after_steps(
            distribution.mirrored_strategy(devices), num_steps=1, num_classes=5
        )

        self.assertEqual(three[2].shape, (4096, 3))
        self.assertEqual(five[2].shape, (4096, 5))


class PreemptionTest(training_test.ColorTreeTestCase):

    def _train_with_sigterm_at(self, config, step):
        """Trains, sending this process SIGTERM just before the given 1-based step ends."""
        original = preemption.SaveOnTerminate.on_train_batch_end
        sent = []

        def terminate_once(callback, batch, logs=None):
            if not sent and batch + 1 == step:
                sent.append(batch)
                os.kill(os.getpid(), signal.SIGTERM)
            original(callback, batch, logs)

        with mock.patch.object(preemption.SaveOnTerminate, "on_train_batch_end", terminate_once):
            return training.train_and_evaluate(config, training_test.one_device())

    def test_sigterm_then_resume_at_step(self):
        config = training_test.small_config(
            self.data_dir, self.model_dir, num_epochs=2, steps_per_epoch=4
        )
        handler_before = signal.getsignal(signal.SIGTERM)

        with self.assertRaises(preemption.Preempted) as stop:
            self._train_with_sigterm_at(config, step=3)

        self.assertEqual((stop.exception.epoch, stop.exception.epoch_step), (0, 3))
        self.assertIn(os.path.join("checkpoints", "interrupted"), stop.exception.path)
        self.assertIs(signal.getsignal(signal.SIGTERM), handler_before)
        # No epoch finished, so there is no per-epoch checkpoint nor result.
        self.assertIsNone(tf.train.latest_checkpoint(os.path.join(self.model_dir, "checkpoints")))
        self.assertFalse(os.path.exists(os.path.join(self.model_dir, "eval_results.json")))
        saved = tf.train.load_checkpoint(stop.exception.path)
        self.assertEqual(saved.get_tensor(training_test.ITERATIONS_KEY), 3)

        with self.assertLogs(logger="absl", level="INFO") as logs:
            results = training.train_and_evaluate(config, training_test.one_device())

        self.assertEqual(results["epoch"], 2)
        self.assertTrue(any("and 3 steps of the next" in line for line in logs.output))
        final = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        # 1 step left of epoch 1, then 4: 8 in all, as without the stop.
        self.assertEqual(final.get_tensor(training_test.ITERATIONS_KEY), 8)
        losses = training_test.scalar_values(os.path.join(self.model_dir, "train"), "epoch_loss")
        self.assertLen(losses, 2)

    def test_resume_needs_whole_executions(self):
        config = training_test.small_config(
            self.data_dir, self.model_dir, num_epochs=1, steps_per_epoch=4
        )
        with self.assertRaises(preemption.Preempted):
            self._train_with_sigterm_at(config, step=3)

        resumed = dataclasses.replace(config, steps_per_execution=2, log_every_steps=2)
        with self.assertRaisesRegex(ValueError, "the remaining 1 steps are not a multiple of "
                                    "steps_per_execution=2"):
            training.train_and_evaluate(resumed, training_test.one_device())

    def test_default_strategy_trains(self):
        config = training_test.small_config(
            self.data_dir, self.model_dir, num_epochs=1, steps_per_epoch=2
        )

        results = training.train_and_evaluate(
            config, distribution.create_strategy(distribution.DEFAULT)
        )

        self.assertEqual(results["epoch"], 1)

    def test_sigterm_on_last_step_of_an_epoch(self):
        config = training_test.small_config(
            self.data_dir, self.model_dir, num_epochs=2, steps_per_epoch=3
        )
        with self.assertRaises(preemption.Preempted):
            self._train_with_sigterm_at(config, step=3)

        results = training.train_and_evaluate(config, training_test.one_device())

        self.assertEqual(results["epoch"], 2)
        final = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(final.get_tensor(training_test.ITERATIONS_KEY), 6)


def _train_command(data_dir, model_dir, num_epochs):
    return [
        sys.executable, "-m", "alexnet_tf.train",
        f"--data_dir={data_dir}", f"--model_dir={model_dir}",
        "--distribution_strategy=multi_worker_mirrored", "--global_batch_size=4",
        f"--num_epochs={num_epochs}", "--steps_per_epoch=6", "--image_size=67",
        "--resize_size=70", "--learning_rate=0.003", "--learning_rate_batch_size=0",
        "--lr_drop_epochs=", "--initialization=glorot_uniform", "--seed=1",
        "--log_every_steps=2",
    ]


class TwoWorkersTrainTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.data_dir = self.create_tempdir().full_path
        sample_images.write_color_tree(self.data_dir, num_train=8, num_validation=4)
        self.model_dir = os.path.join(self.create_tempdir().full_path, "run")
        self.scratch_root = self.create_tempdir().full_path
        self.workers = [
            f"127.0.0.1:{port}" for port in multi_worker_input_test._free_ports(2)
        ]

    def _start(self, index, num_epochs):
        env = dict(os.environ)
        env.update(
            TF_CONFIG=json.dumps({
                "cluster": {"worker": self.workers},
                "task": {"type": "worker", "index": index},
            }),
            PYTHONPATH=_REPOSITORY,
            CUDA_VISIBLE_DEVICES="",
            TMPDIR=self.scratch_root,
        )
        log = open(os.path.join(self.scratch_root, f"worker{index}.log"), "a")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            _train_command(self.data_dir, self.model_dir, num_epochs),
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process

    def _log(self, index):
        with open(os.path.join(self.scratch_root, f"worker{index}.log")) as file:
            return file.read()

    def _wait_for_checkpoint(self, processes, after_epoch=0, timeout=240):
        """Waits until the chief has saved a checkpoint of an epoch after `after_epoch`."""
        deadline = time.monotonic() + timeout
        checkpoint_dir = os.path.join(self.model_dir, "checkpoints")
        while self._saved_epoch(checkpoint_dir) <= after_epoch:
            for index, process in enumerate(processes):
                self.assertIsNone(process.poll(), self._log(index)[-3000:])
            self.assertLess(time.monotonic(), deadline, "no checkpoint in time")
            time.sleep(0.2)
        return self._saved_epoch(checkpoint_dir)

    def _saved_epoch(self, checkpoint_dir):
        path = tf.train.latest_checkpoint(checkpoint_dir)
        if path is None:
            return 0
        return int(tf.train.load_checkpoint(path).get_tensor(_EPOCH_KEY))

    def test_sigterm_kill_and_restarts(self):
        num_epochs = 5
        processes = [self._start(index, num_epochs) for index in range(2)]
        self._wait_for_checkpoint(processes)

        # SIGTERM reaches one worker; both stop after the same epoch and exit cleanly.
        processes[1].send_signal(signal.SIGTERM)
        for index, process in enumerate(processes):
            self.assertEqual(process.wait(timeout=120), 0, self._log(index)[-3000:])
        self.assertIn("Stopped on SIGTERM after epoch", self._log(0))
        # The non-chief names the chief's checkpoint, not its own scratch copy.
        self.assertIn(f"saved in {self.model_dir}", self._log(1))
        self.assertFalse(os.path.exists(os.path.join(self.model_dir, "eval_results.json")))
        stopped_epoch = self._saved_epoch(os.path.join(self.model_dir, "checkpoints"))
        self.assertLess(stopped_epoch, num_epochs)

        # A killed worker makes the chief stop within seconds with a one-line error.
        processes = [self._start(index, num_epochs) for index in range(2)]
        killed_epoch = self._wait_for_checkpoint(processes, after_epoch=stopped_epoch)
        self.assertLess(killed_epoch, num_epochs, "the run ended before the kill")
        processes[1].kill()
        processes[1].wait()
        self.assertNotEqual(processes[0].wait(timeout=120), 0)
        self.assertIn("error: A worker of the cluster stopped", self._log(0))

        restarted = [self._start(index, num_epochs) for index in range(2)]
        for index, process in enumerate(restarted):
            self.assertEqual(process.wait(timeout=300), 0, self._log(index)[-3000:])

        chief_log, worker_log = self._log(0), self._log(1)
        self.assertEqual(chief_log.count("Resuming from"), 2)
        self.assertEqual(worker_log.count("Resuming from"), 2)
        for index, log in enumerate((chief_log, worker_log)):
            # Each worker's pipeline reads its own half of the files.
            self.assertIn(f"Input pipeline {index + 1} of 2 reads", log)
        self.assertIn("this worker is not the chief", worker_log)

        with open(os.path.join(self.model_dir, "eval_results.json")) as file:
            self.assertEqual(json.load(file)["epoch"], num_epochs)
        checkpoint = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        self.assertEqual(checkpoint.get_tensor(training_test.ITERATIONS_KEY), num_epochs * 6)
        self.assertTrue(os.path.isdir(os.path.join(self.model_dir, "export")))
        # Of worker 1's three scratch folders, the killed run's is left behind.
        scratch = [name for name in os.listdir(self.scratch_root) if name.startswith("alexnet_tf_")]
        self.assertLen(scratch, 1, os.listdir(self.scratch_root))
        self.assertStartsWith(scratch[0], "alexnet_tf_worker1_")


if __name__ == "__main__":
    absltest.main()
