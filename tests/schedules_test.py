"""Tests of the learning-rate schedules, the linear scaling rule and the plateau rule."""

import dataclasses
import math
import os

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import distribution
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import schedules
from alexnet_tf import training
import training_test


def rates(schedule, steps):
    """Returns the schedule's learning rate at each optimizer step count in `steps`."""
    return [float(schedule(step)) for step in steps]


def plateau_callback(peak_learning_rate=0.01, **kwargs):
    """Returns a `DropOnPlateau` on a fresh state, attached to a tiny compiled model."""
    state = schedules.PlateauState()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    schedule = schedules.WarmupSchedule(peak_learning_rate, multiplier=state.multiplier)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    callback = schedules.DropOnPlateau(state, **kwargs)
    callback.set_model(model)
    return callback


def feed_errors(callback, errors, first_epoch=0):
    """Ends one epoch per validation top-1 error in `errors`.

    Returns:
        The epochs, counted from 1, after which the rule dropped the rate.
    """
    drop_epochs = []
    for epoch, error in enumerate(errors, start=first_epoch):
        drops_before = int(callback.state.num_drops.numpy())
        callback.on_epoch_end(epoch, {"val_top_1_accuracy": 1.0 - error})
        if int(callback.state.num_drops.numpy()) > drops_before:
            drop_epochs.append(epoch + 1)
    return drop_epochs


class StepScheduleTest(tf.test.TestCase):

    def test_divides_by_ten_at_each_boundary_epoch(self):
        schedule = schedules.step_schedule(0.01, (2, 3), steps_per_epoch=10)

        # The rate at step s is the rate of the update after s finished steps.
        self.assertAllClose(float(schedule(0)), 0.01)
        self.assertAllClose(float(schedule(19)), 0.01)
        self.assertAllClose(float(schedule(20)), 0.001)
        self.assertAllClose(float(schedule(29)), 0.001)
        self.assertAllClose(float(schedule(30)), 0.0001)

    def test_drop_applies_from_epoch_start(self):
        schedule = schedules.step_schedule(0.01, (2,), steps_per_epoch=10)
        variable = keras.Variable(np.zeros([1], np.float32))
        optimizer = keras.optimizers.SGD(learning_rate=schedule)
        optimizer.build([variable])

        optimizer.iterations.assign(19)  # The last update of epoch 1.
        optimizer.apply_gradients([(np.ones([1], np.float32), variable)])
        last_update_of_epoch_one = -float(variable.numpy()[0])
        optimizer.apply_gradients([(np.ones([1], np.float32), variable)])
        first_update_of_epoch_two = -float(variable.numpy()[0]) - last_update_of_epoch_one

        self.assertAllClose(last_update_of_epoch_one, 0.01)
        self.assertAllClose(first_update_of_epoch_two, 0.001)

    def test_fractional_epochs_round_to_steps(self):
        # 0.29 * 100 is 28.999999999999996 in floating point.
        schedule = schedules.step_schedule(0.01, (0.29,), steps_per_epoch=100)

        self.assertAllClose(float(schedule(28)), 0.01)
        self.assertAllClose(float(schedule(29)), 0.001)

    def test_no_boundaries_is_a_constant(self):
        self.assertEqual(schedules.step_schedule(0.02, (), steps_per_epoch=10), 0.02)

    def test_rejects_unsorted_epochs(self):
        with self.assertRaisesRegex(ValueError, r"\[3, 2\]"):
            schedules.step_schedule(0.01, (3, 2), steps_per_epoch=10)


class WarmupScheduleTest(tf.test.TestCase):

    def test_ramp_peaks_on_last_step(self):
        schedule = schedules.WarmupSchedule(0.1, warmup_steps=4)

        self.assertAllClose(rates(schedule, [0, 1, 2, 3]), [0.025, 0.05, 0.075, 0.1])
        self.assertAllClose(rates(schedule, [4, 1000]), [0.1, 0.1])

    def test_no_warmup_starts_at_peak(self):
        schedule = schedules.WarmupSchedule(0.1)

        self.assertAllClose(float(schedule(0)), 0.1)

    def test_multiplier_scales_warmup_and_after(self):
        multiplier = tf.Variable(1.0)
        schedule = schedules.WarmupSchedule(0.1, warmup_steps=4, multiplier=multiplier)

        multiplier.assign(0.1)

        self.assertAllClose(float(schedule(1)), 0.005)
        self.assertAllClose(float(schedule(10)), 0.01)

    def test_config_round_trip(self):
        decay = schedules.step_schedule(0.1, (2,), steps_per_epoch=10)
        schedule = schedules.WarmupSchedule(0.1, 5, decay, multiplier=tf.Variable(0.5))

        restored = keras.optimizers.schedules.deserialize(
            keras.optimizers.schedules.serialize(schedule)
        )

        self.assertIsInstance(restored, schedules.WarmupSchedule)
        steps = [0, 4, 19, 20, 50]
        self.assertAllClose(rates(restored, steps), rates(schedule, steps))

    def test_rejects_negative_warmup(self):
        with self.assertRaisesRegex(ValueError, "warmup_steps=-1"):
            schedules.WarmupSchedule(0.1, warmup_steps=-1)


class CreateScheduleTest(tf.test.TestCase):

    def test_step_after_warmup(self):
        schedule = schedules.create_schedule(
            "step", 0.1, steps_per_epoch=10, num_epochs=5, warmup_epochs=0.5, drop_epochs=(2, 4)
        )

        # Five warm-up steps of 0.02 each, then drops at steps 20 and 40.
        self.assertAllClose(rates(schedule, [0, 4, 5, 19]), [0.02, 0.1, 0.1, 0.1])
        self.assertAllClose(rates(schedule, [20, 39, 40]), [0.01, 0.01, 0.001])

    def test_step_without_drops_is_constant(self):
        schedule = schedules.create_schedule("step", 0.1, steps_per_epoch=10, num_epochs=5)

        self.assertAllClose(rates(schedule, [0, 49]), [0.1, 0.1])

    def test_cosine_decays_to_final_fraction(self):
        schedule = schedules.create_schedule(
            "cosine", 0.1, steps_per_epoch=10, num_epochs=5, warmup_epochs=1,
            final_learning_rate_fraction=0.1,
        )

        # Warm-up over steps 0 to 9, then a half cosine over the 40 steps left.
        self.assertAllClose(rates(schedule, [0, 9, 10]), [0.01, 0.1, 0.1])
        self.assertAllClose(float(schedule(30)), 0.01 + 0.09 * 0.5)  # Half way.
        self.assertAllClose(float(schedule(20)), 0.01 + 0.09 * (1 + math.cos(math.pi / 4)) / 2)
        self.assertAllClose(float(schedule(50)), 0.01)
        decaying = rates(schedule, range(10, 51))
        self.assertTrue(all(later < earlier for earlier, later in zip(decaying, decaying[1:])))

    def test_cosine_ends_at_zero_by_default(self):
        schedule = schedules.create_schedule("cosine", 0.1, steps_per_epoch=10, num_epochs=5)

        self.assertAllClose(float(schedule(0)), 0.1)
        self.assertAllClose(float(schedule(50)), 0.0)

    def test_constant(self):
        schedule = schedules.create_schedule("constant", 0.05, steps_per_epoch=10, num_epochs=3)

        self.assertAllClose(rates(schedule, [0, 15, 29]), [0.05, 0.05, 0.05])

    def test_plateau_follows_multiplier_after_warmup(self):
        state = schedules.PlateauState()
        schedule = schedules.create_schedule(
            "plateau", 0.05, steps_per_epoch=10, num_epochs=3, warmup_epochs=1,
            multiplier=state.multiplier,
        )

        self.assertAllClose(rates(schedule, [0, 9, 15]), [0.005, 0.05, 0.05])
        state.multiplier.assign(0.1)
        self.assertAllClose(rates(schedule, [0, 9, 15]), [0.0005, 0.005, 0.005])

    def test_rejects_unknown_name(self):
        with self.assertRaisesRegex(ValueError, "'linear'.*plateau"):
            schedules.create_schedule("linear", 0.1, steps_per_epoch=10, num_epochs=5)

    def test_rejects_warmup_as_long_as_run(self):
        with self.assertRaisesRegex(ValueError, "warmup_epochs=3 .*num_epochs=3"):
            schedules.create_schedule(
                "constant", 0.1, steps_per_epoch=10, num_epochs=3, warmup_epochs=3
            )

    def test_rejects_drop_within_warmup(self):
        with self.assertRaisesRegex(ValueError, "epoch 1, is not after the warm-up of 2 epochs"):
            schedules.create_schedule(
                "step", 0.1, steps_per_epoch=10, num_epochs=5, warmup_epochs=2,
                drop_epochs=(1, 3),
            )

    def test_plateau_requires_multiplier(self):
        with self.assertRaisesRegex(ValueError, "name='plateau', multiplier=None"):
            schedules.create_schedule("plateau", 0.1, steps_per_epoch=10, num_epochs=5)

    def test_rejects_multiplier_for_step(self):
        with self.assertRaisesRegex(ValueError, "name='step'"):
            schedules.create_schedule(
                "step", 0.1, steps_per_epoch=10, num_epochs=5, multiplier=tf.Variable(1.0)
            )

    def test_rejects_final_fraction_above_one(self):
        with self.assertRaisesRegex(ValueError, "final_learning_rate_fraction=1.5"):
            schedules.create_schedule(
                "cosine", 0.1, steps_per_epoch=10, num_epochs=5, final_learning_rate_fraction=1.5
            )


class ScaledLearningRateTest(absltest.TestCase):

    def test_scales_with_global_batch(self):
        self.assertAlmostEqual(schedules.scaled_learning_rate(0.01, 512, 128), 0.04)
        self.assertAlmostEqual(schedules.scaled_learning_rate(0.01, 64, 128), 0.005)

    def test_paper_batch_keeps_rate(self):
        self.assertEqual(schedules.scaled_learning_rate(0.01, 128, 128), 0.01)

    def test_zero_turns_scaling_off(self):
        self.assertEqual(schedules.scaled_learning_rate(0.01, 512, 0), 0.01)

    def test_logs_the_arithmetic(self):
        with self.assertLogs(logger="absl", level="INFO") as logs:
            schedules.scaled_learning_rate(0.01, 256, 128)

        self.assertIn("0.02 = 0.01 x global batch 256 / 128", logs.output[0])

    def test_rejects_negative_batch(self):
        with self.assertRaisesRegex(ValueError, "learning_rate_batch_size=-1"):
            schedules.scaled_learning_rate(0.01, 128, -1)


class DropOnPlateauTest(tf.test.TestCase):

    def test_drops_after_patience_epochs(self):
        callback = plateau_callback(patience=2)
        errors = [0.50, 0.45, 0.45, 0.46, 0.44, 0.44, 0.44]

        drop_epochs = feed_errors(callback, errors)

        # Epochs 3 and 4 do not beat 0.45; epochs 6 and 7 do not beat 0.44.
        self.assertEqual(drop_epochs, [4, 7])
        self.assertAllClose(float(callback.state.multiplier.numpy()), 0.01)
        self.assertAllClose(float(callback.state.best_error.numpy()), 0.44)

    def test_patience_restarts_after_drop(self):
        callback = plateau_callback(patience=3)

        drop_epochs = feed_errors(callback, [0.5] * 10)

        self.assertEqual(drop_epochs, [4, 7, 10])

    def test_max_drops_caps_the_drops(self):
        callback = plateau_callback(patience=2, max_drops=2)

        drop_epochs = feed_errors(callback, [0.5] * 20)

        self.assertEqual(drop_epochs, [3, 5])
        self.assertEqual(int(callback.state.num_drops.numpy()), 2)
        self.assertAllClose(float(callback.state.multiplier.numpy()), 0.01)

    def test_zero_max_drops_never_drops(self):
        callback = plateau_callback(patience=1, max_drops=0)

        self.assertEqual(feed_errors(callback, [0.5] * 5), [])

    def test_falls_below_min_delta_do_not_count(self):
        callback = plateau_callback(patience=2, min_delta=0.01)
        # Epoch 3 is 0.011 below the best, epochs 4 and 5 only 0.004 and 0.009.
        errors = [0.50, 0.495, 0.489, 0.485, 0.480]

        drop_epochs = feed_errors(callback, errors)

        self.assertEqual(drop_epochs, [5])
        self.assertAllClose(float(callback.state.best_error.numpy()), 0.489)

    def test_equal_error_is_no_improvement(self):
        callback = plateau_callback(patience=1, min_delta=0.0)

        self.assertEqual(feed_errors(callback, [0.5, 0.5]), [2])

    def test_any_fall_counts_with_zero_min_delta(self):
        callback = plateau_callback(patience=1, min_delta=0.0)

        self.assertEqual(feed_errors(callback, [0.5, 0.4999, 0.4998]), [])

    def test_optimizer_rate_follows_drops(self):
        callback = plateau_callback(peak_learning_rate=0.02, patience=1)
        optimizer = callback.model.optimizer

        feed_errors(callback, [0.5, 0.5])

        self.assertAllClose(float(optimizer.learning_rate), 0.002)

    def test_logs_each_drop(self):
        callback = plateau_callback(patience=2)

        with self.assertLogs(logger="absl", level="INFO") as logs:
            feed_errors(callback, [0.5, 0.5, 0.5])

        self.assertLen(logs.output, 1)
        self.assertIn("After epoch 3", logs.output[0])
        self.assertIn("learning rate 0.01 -> 0.001, drop 1 of 3", logs.output[0])

    def test_missing_validation_accuracy(self):
        callback = plateau_callback()

        with self.assertRaisesRegex(ValueError, "'val_top_1_accuracy'.*\\['loss'\\]"):
            callback.on_epoch_end(0, {"loss": 1.0})

    def test_rejects_zero_patience(self):
        with self.assertRaisesRegex(ValueError, "patience=0"):
            schedules.DropOnPlateau(schedules.PlateauState(), patience=0)


class PlateauCheckpointTest(tf.test.TestCase):

    def _manager(self, model_dir, callback, with_state=True):
        model = callback.model
        model.optimizer.build(model.trainable_variables)
        extra = {"lr_plateau": callback.state} if with_state else None
        return model_dir_lib.create_checkpoint_manager(
            model_dir, model, model.optimizer, tf.Variable(0, dtype=tf.int64),
            extra_trackables=extra,
        )

    def test_state_restores_and_rule_continues(self):
        model_dir = self.create_tempdir().full_path
        errors = [0.5] * 10
        uninterrupted = feed_errors(plateau_callback(patience=3), errors)
        first = plateau_callback(patience=3)
        first_drops = feed_errors(first, errors[:5])
        self._manager(model_dir, first).save()

        second = plateau_callback(patience=3)
        self.assertIsNotNone(model_dir_lib.restore_latest(self._manager(model_dir, second)))
        second_drops = feed_errors(second, errors[5:], first_epoch=5)

        self.assertEqual(first_drops, [4])
        self.assertEqual(first_drops + second_drops, uninterrupted)
        self.assertEqual(uninterrupted, [4, 7, 10])

    def test_restored_variables_match(self):
        model_dir = self.create_tempdir().full_path
        first = plateau_callback(patience=2)
        feed_errors(first, [0.5, 0.4, 0.4, 0.4, 0.41])
        self._manager(model_dir, first).save()

        second = plateau_callback(patience=2)
        model_dir_lib.restore_latest(self._manager(model_dir, second))

        for name in ("best_error", "epochs_since_improvement", "num_drops", "multiplier"):
            self.assertEqual(
                getattr(second.state, name).numpy(), getattr(first.state, name).numpy(), name
            )
        self.assertAllClose(float(second.state.best_error.numpy()), 0.4)
        self.assertEqual(int(second.state.epochs_since_improvement.numpy()), 1)

    def test_checkpoint_without_state_is_rejected(self):
        model_dir = self.create_tempdir().full_path
        self._manager(model_dir, plateau_callback(), with_state=False).save()

        manager = self._manager(model_dir, plateau_callback())

        with self.assertRaisesRegex(ValueError, "--lr_schedule.*new --model_dir"):
            model_dir_lib.restore_latest(manager)

    def test_reserved_name_is_rejected(self):
        callback = plateau_callback()

        with self.assertRaisesRegex(ValueError, r"\['epoch'\]"):
            model_dir_lib.create_checkpoint_manager(
                self.create_tempdir().full_path, callback.model, callback.model.optimizer,
                tf.Variable(0, dtype=tf.int64), extra_trackables={"epoch": callback.state},
            )


# Checkpoint keys of the plateau state's variables.
PLATEAU_KEY = "lr_plateau/{}/.ATTRIBUTES/VARIABLE_VALUE"


class PlateauTrainingTest(training_test.ColorTreeTestCase):

    # 6 validation images fill one batch of 6, so each replica gets 3.
    NUM_VALIDATION = 2

    def test_drops_survive_resume(self):
        strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
        # No epoch can lower the error by 1.0, so each epoch after the first is
        # one without improvement, and a patience of 1 drops the rate after it.
        config = training_test.small_config(
            self.data_dir, self.model_dir, num_epochs=2, lr_schedule="plateau",
            plateau_patience=1, plateau_min_delta=1.0, plateau_max_drops=2,
            # Keras counts 4 and 8 batches at the epoch ends of each fit call,
            # and neither divides by 3.
            log_every_steps=3,
        )
        training.train_and_evaluate(config, strategy)
        first = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))

        with self.assertLogs(logger="absl", level="INFO") as logs:
            training.train_and_evaluate(dataclasses.replace(config, num_epochs=4), strategy)
        second = tf.train.load_checkpoint(os.path.join(self.model_dir, "checkpoints"))

        self.assertEqual(first.get_tensor(PLATEAU_KEY.format("num_drops")), 1)
        self.assertAllClose(first.get_tensor(PLATEAU_KEY.format("multiplier")), 0.1)
        self.assertTrue(any("1 of 2 drops made" in line for line in logs.output))
        self.assertEqual(second.get_tensor(PLATEAU_KEY.format("num_drops")), 2)
        self.assertAllClose(second.get_tensor(PLATEAU_KEY.format("multiplier")), 0.01)
        # TensorBoard gets the rate after each epoch's drop, which the next epoch uses.
        logged_rates = training_test.scalar_values(
            os.path.join(self.model_dir, "train"), "epoch_learning_rate"
        )
        self.assertAllClose(logged_rates, [0.003, 0.0003, 0.00003, 0.00003])


if __name__ == "__main__":
    absltest.main()
