"""Trains and evaluates AlexNet on a folder tree, TFRecord shards or TFDS, then exports it."""

import dataclasses
import os

from absl import logging
import keras
import tensorflow as tf

from alexnet_tf import callbacks as callbacks_lib
from alexnet_tf import distribution
from alexnet_tf.data import bad_images as bad_images_lib
from alexnet_tf.data import input_pipeline
from alexnet_tf.data import sources
from alexnet_tf import model as model_lib
from alexnet_tf import model_dir as model_dir_lib
from alexnet_tf import optimizer as optimizer_lib
from alexnet_tf import precision
from alexnet_tf import preemption
from alexnet_tf import preprocessing
from alexnet_tf import schedules
from alexnet_tf import serving

_GRID_IMAGES = 16


@dataclasses.dataclass
class TrainConfig:
    """Settings of a training run. The defaults are the recipe of Krizhevsky et al. (2012).

    Attributes:
        data_dir: where the data set is: the root of the folder tree
            (`train/`, `validation/`), the folder of TFRecord shards, or the
            TFDS data folder (None for the TFDS default).
        model_dir: where checkpoints, TensorBoard logs and results go.
        export_dir: where the SavedModel goes; None for `model_dir/export`.
        global_batch_size: images per step over all replicas.
        num_epochs: epochs to train in total, counting resumed ones.
        steps_per_epoch: training steps per epoch; None for one pass over the
            training images (rounded down to whole batches).
        learning_rate: peak learning rate for `learning_rate_batch_size`
            images per step.
        learning_rate_batch_size: the global batch `learning_rate` is meant
            for; the rate used is scaled by global_batch_size /
            learning_rate_batch_size. 0 uses `learning_rate` unscaled.
        lr_schedule: one of `schedules.SCHEDULES`, see `schedules.create_schedule`.
        warmup_epochs: epochs of linear warm-up to the peak rate.
        lr_drop_epochs: "step" only: epochs at whose start the learning rate
            is divided by 10.
        final_learning_rate_fraction: "cosine" only: the last rate as a
            fraction of the peak.
        plateau_patience, plateau_min_delta, plateau_max_drops: "plateau"
            only: see `schedules.DropOnPlateau`.
        momentum: SGD momentum.
        weight_decay: L2 coefficient added to the weights' gradients.
        image_size: side of the model's input, in pixels; None for the
            variant's `model.default_image_size`.
        resize_size: shorter side the crops are taken from, in pixels.
        pca_stddev: standard deviation of the PCA lighting coefficients.
        dropout_rate: dropout rate of fc6 and fc7.
        variant: the network, an entry of `model.VARIANTS`.
        initialization: an entry of `model.INITIALIZATIONS`, or None for the
            variant's own, see `model.AlexNet`.
        seed: seed of initialization, shuffling and augmentation, or None.
        jit_compile: whether to compile the training step with XLA, which was
            faster on a 2-core CPU in a one-off trial. Ignored with more than
            one replica.
        dtype: compute precision, an entry of `precision.DTYPES`. The
            variables and the checkpoints are float32 in all three, and
            float16 trains with dynamic loss scaling.
        steps_per_execution: training steps that one call of the compiled
            training function runs, see `keras.Model.compile`. Keras calls
            the callbacks once per call, so `log_every_steps` and
            `steps_per_epoch` must be multiples of it. Ignored with more than
            one replica, where Keras fails with more than 1.
        log_every_steps: steps between throughput logs and TensorBoard points.
        export: whether to export the SavedModel at the end.
        dataset: "folder", "tfrecord" or "tfds:NAME", see `data.sources`.
        validation_labels: label file of a flat validation folder, see
            `data.image_folder.read_label_file`.
        label_offset: subtracted from TFRecord labels; None for the default
            of `data.tfrecords.open_tfrecords`.
        class_names_file: class names in label order, one per line, for
            TFRecord shards without the `dataset_info.json` of `build_tfrecords`.
        tfds_manual_dir: folder of manually downloaded TFDS files.
        strict_decoding: stop at the first bad image file instead of skipping it.
        shuffle_buffer_size, cache_dataset, deterministic_input, data_threads,
        autotune_ram_budget_mb: see `data.input_pipeline.InputOptions`.
    """

    data_dir: str
    model_dir: str
    export_dir: str = None
    global_batch_size: int = 128
    num_epochs: int = 90
    steps_per_epoch: int = None
    learning_rate: float = 0.01
    learning_rate_batch_size: int = 128
    lr_schedule: str = schedules.STEP
    warmup_epochs: float = 0.0
    lr_drop_epochs: tuple = (30, 60, 80)
    final_learning_rate_fraction: float = 0.0
    plateau_patience: int = 5
    plateau_min_delta: float = 0.001
    plateau_max_drops: int = 3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    image_size: int = None
    resize_size: int = preprocessing.DEFAULT_RESIZE_SIZE
    pca_stddev: float = preprocessing.DEFAULT_PCA_STDDEV
    dropout_rate: float = 0.5
    variant: str = "paper"
    initialization: str = None
    seed: int = None
    jit_compile: bool = False
    dtype: str = precision.FLOAT32
    steps_per_execution: int = 1
    log_every_steps: int = 100
    export: bool = True
    dataset: str = sources.FOLDER
    validation_labels: str = None
    label_offset: int = None
    class_names_file: str = None
    tfds_manual_dir: str = None
    strict_decoding: bool = False
    shuffle_buffer_size: int = 10_000
    cache_dataset: bool = False
    deterministic_input: bool = False
    data_threads: int = 0
    autotune_ram_budget_mb: int = 0

    def resolved_export_dir(self):
        return self.export_dir or os.path.join(self.model_dir, "export")

    def input_options(self):
        return input_pipeline.InputOptions(
            shuffle_buffer_size=self.shuffle_buffer_size,
            cache=self.cache_dataset,
            strict_decoding=self.strict_decoding,
            deterministic=self.deterministic_input,
            private_threads=self.data_threads,
            autotune_ram_budget_mb=self.autotune_ram_budget_mb,
        )


def _check_config(config):
    sources.check_dataset_name(config.dataset)
    model_lib.check_image_size(config.image_size, config.variant)
    sources.check_data_dir(config.dataset, config.data_dir)
    if config.resize_size < config.image_size:
        raise ValueError(
            f"resize_size={config.resize_size} is smaller than image_size="
            f"{config.image_size}: crops are taken from an image whose shorter side "
            "is resize_size. Pass a resize_size of at least image_size."
        )
    if config.global_batch_size < 1 or config.num_epochs < 1:
        raise ValueError(
            "Expected global_batch_size >= 1 and num_epochs >= 1. Received: "
            f"global_batch_size={config.global_batch_size}, num_epochs={config.num_epochs}"
        )
    precision.check_dtype(config.dtype)


def _check_steps_per_execution(config):
    """Checks that callbacks and epochs end on the steps where Keras calls back.

    Keras 3.15 runs `steps_per_execution` steps per call of the training
    function and calls the callbacks only after each call. An epoch of
    `steps_per_epoch` steps that is not a multiple of it runs up to the next
    multiple, so the epochs would drift from the learning-rate schedule.
    """
    steps_per_execution = config.steps_per_execution
    if steps_per_execution < 1:
        raise ValueError(
            f"Expected steps_per_execution >= 1. Received: "
            f"steps_per_execution={steps_per_execution}"
        )
    for name in ("log_every_steps", "steps_per_epoch"):
        value = getattr(config, name)
        if value and value % steps_per_execution:
            raise ValueError(
                f"{name}={value} is not a multiple of steps_per_execution="
                f"{steps_per_execution}: Keras calls back and ends epochs only after "
                f"whole executions. Pass a multiple of {steps_per_execution} to "
                f"--{name}, or a divisor of {value} to --steps_per_execution."
            )


def _count_examples(source):
    """Returns the source's number of records, reading them all if it is unknown."""
    if source.num_examples is not None:
        return source.num_examples
    logging.info(
        "Counting the records of %s, which reads all of them once; pass "
        "--steps_per_epoch to skip this.", source.description,
    )
    return int(source.read().reduce(0, lambda count, _: count + 1).numpy())


def _steps_per_epoch(config, num_train_images):
    if num_train_images is not None and config.global_batch_size > num_train_images:
        logging.warning(
            "The global batch of %d is larger than the %d training images, so "
            "each batch repeats images.", config.global_batch_size, num_train_images,
        )
    if config.steps_per_epoch:
        return config.steps_per_epoch
    steps = num_train_images // config.global_batch_size
    if steps == 0:
        raise ValueError(
            f"The training split has {num_train_images} images, fewer than one "
            f"global batch of {config.global_batch_size}. Lower --global_batch_size."
        )
    whole_executions = steps - steps % config.steps_per_execution
    if whole_executions == 0:
        raise ValueError(
            f"An epoch of {num_train_images} images has {steps} steps of "
            f"{config.global_batch_size} images, fewer than steps_per_execution="
            f"{config.steps_per_execution}. Lower --steps_per_execution."
        )
    if whole_executions < steps:
        logging.info(
            "Epochs have %d steps instead of %d, a multiple of steps_per_execution=%d.",
            whole_executions, steps, config.steps_per_execution,
        )
    return whole_executions


def _supported_steps_per_execution(config, num_replicas):
    """Returns `config.steps_per_execution`, or 1 with a warning where Keras fails with more.

    With Keras 3.15 and TensorFlow 2.21, `model.fit` on a distributed dataset
    with several replicas and more than one step per execution fails with
    "You must feed a value for placeholder tensor" (checked on two CPU
    devices under `MirroredStrategy`). One replica works.
    """
    if config.steps_per_execution == 1 or num_replicas == 1:
        return config.steps_per_execution
    logging.warning(
        "--steps_per_execution=%d is ignored: with %d replicas, Keras 3.15 fails "
        "to run more than one step per execution on a distributed dataset. "
        "Training runs one step per execution.",
        config.steps_per_execution, num_replicas,
    )
    return 1


def _resolve_jit_compile(config, strategy):
    """Returns whether to compile the training step with XLA, and logs why when not.

    Checked with TensorFlow 2.21 and Keras 3.15 on a 2-core Intel Xeon CPU:
    with one replica XLA trains in float32, bfloat16 and float16. With two
    replicas Keras compiles the step of all replicas as one XLA computation,
    which fails ("Trying to access resource ... located in device ...")
    because XLA cannot read variables that live on another device.
    """
    num_replicas = strategy.num_replicas_in_sync
    jit_compile = config.jit_compile
    if jit_compile and num_replicas > 1:
        logging.warning(
            "--jit_compile is ignored: with %d replicas under %s, Keras compiles the "
            "step of all replicas as one XLA computation, which fails because it "
            "cannot read the variables of the other devices. Training runs without XLA.",
            num_replicas, type(strategy).__name__.lstrip("_"),
        )
        jit_compile = False

    on_cpu = not tf.config.list_logical_devices("GPU")
    if config.dtype == precision.FLOAT16 and on_cpu and not jit_compile:
        logging.warning(
            "--dtype=float16 on the CPU without XLA trained about 40 times slower "
            "than float32 in a trial (TensorFlow 2.21, 2-core Intel Xeon, 67-pixel "
            "images), and about as fast with XLA. Pass --dtype=bfloat16, or "
            "--jit_compile with one replica."
        )
    logging.info(
        "Training in %s (Keras policy %s), %s XLA, %d step(s) per execution.",
        config.dtype, precision.policy_name(config.dtype),
        "with" if jit_compile else "without", config.steps_per_execution,
    )
    return jit_compile


def _build_and_compile(config, num_classes, steps_per_epoch, jit_compile, plateau_state=None):
    """Builds the model and optimizer inside the current strategy scope.

    `plateau_state` is the `schedules.PlateauState` of a run with
    `lr_schedule="plateau"`, whose multiplier the learning rate follows.

    Returns `(model, optimizer)`. With `dtype="float16"`, `model.optimizer` is
    a `keras.optimizers.LossScaleOptimizer` around `optimizer`, and only
    `optimizer` goes into the checkpoint, so that checkpoints of every dtype
    contain the same variables and a run can continue in another dtype.
    NOTE: the loss scale is therefore not saved. A resumed float16 run starts
    again from Keras' initial scale of 2**15 and, as a new run does, skips
    the steps whose gradients overflow while it halves the scale.
    """
    model = model_lib.AlexNet(
        num_classes=num_classes,
        image_size=config.image_size,
        dropout_rate=config.dropout_rate,
        initialization=config.initialization,
        seed=config.seed,
        variant=config.variant,
        dtype=precision.policy_name(config.dtype),
    )
    schedule = schedules.create_schedule(
        config.lr_schedule,
        schedules.scaled_learning_rate(
            config.learning_rate, config.global_batch_size, config.learning_rate_batch_size
        ),
        steps_per_epoch,
        config.num_epochs,
        warmup_epochs=config.warmup_epochs,
        drop_epochs=config.lr_drop_epochs,
        final_learning_rate_fraction=config.final_learning_rate_fraction,
        multiplier=None if plateau_state is None else plateau_state.multiplier,
    )
    optimizer = optimizer_lib.MomentumWithWeightDecay(
        learning_rate=schedule, momentum=config.momentum, l2_weight_decay=config.weight_decay
    )
    training_optimizer = optimizer
    if precision.needs_loss_scaling(config.dtype):
        # Keras' compile(auto_scale_loss=True) would wrap it too. Wrapping it
        # here keeps the inner optimizer at hand for the checkpoint.
        training_optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=training_optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="top_1_accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top_5_accuracy"),
        ],
        jit_compile=jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    # Building the optimizer now creates its momentum slots, so a checkpoint can
    # be restored into them before the first step. A LossScaleOptimizer builds
    # the optimizer it wraps.
    training_optimizer.build(model.trainable_variables)
    return model, optimizer


def _augmented_sample(train_source, config):
    """Returns a few training images exactly as the model receives them."""
    dataset = input_pipeline.make_dataset(
        train_source,
        _GRID_IMAGES,
        training=True,
        image_size=config.image_size,
        resize_size=config.resize_size,
        pca_stddev=config.pca_stddev,
        seed=config.seed,
        options=config.input_options(),
    )
    images, _ = next(iter(dataset))
    return images


def _final_metrics(model, history_logs, validation_dataset):
    """Returns the last epoch's validation metrics, evaluating if there are none."""
    metric_names = ("loss", "top_1_accuracy", "top_5_accuracy")
    if history_logs and all(f"val_{name}" in history_logs for name in metric_names):
        return {name: float(history_logs[f"val_{name}"][-1]) for name in metric_names}

    logging.info("Evaluating the restored model on the validation split.")
    results = model.evaluate(validation_dataset, return_dict=True, verbose=2)
    return {name: float(results[name]) for name in metric_names}


@dataclasses.dataclass
class _Position:
    """Position a run continues from: `epoch` epochs done and `epoch_step` steps into the next."""

    epoch: int
    epoch_step: int = 0


def _fit(
    config, model, checkpoint_state, train_source,
    train_dataset, validation_dataset, steps_per_epoch, start,
    skipped_image_logs, strategy, plateau_state=None,
):
    """Trains from `start` to `config.num_epochs`; returns Keras' history dict.

    A run that stopped mid-epoch first trains the rest of that epoch, as a
    `fit` call of its remaining steps, so that its epoch-end callbacks run
    once the epoch is whole.

    Raises:
        preemption.Preempted: on SIGTERM, after saving a checkpoint.
    """
    model_dir_lib.write_json(
        os.path.join(config.model_dir, f"run_config-epoch{start.epoch}.json"),
        dataclasses.asdict(config),
    )
    writers = {
        name: callbacks_lib.summary_writer(config.model_dir, name)
        for name in ("train", "validation")
    }
    train_writer = writers["train"]
    # Keras calls callbacks in order: a plateau drop must come before the
    # checkpoint saves its state and before TensorBoard writes the
    # epoch_learning_rate that the next epoch starts with, and a stop between
    # epochs comes after the checkpoint.
    schedule_callbacks = []
    if plateau_state is not None:
        schedule_callbacks.append(schedules.DropOnPlateau(
            plateau_state,
            patience=config.plateau_patience,
            min_delta=config.plateau_min_delta,
            max_drops=config.plateau_max_drops,
        ))
    # Keras' TensorBoard counts calls of the training function, each of
    # steps_per_execution steps. NOTE: so its batch_* points are numbered
    # in calls, not steps, when steps_per_execution is above 1.
    tensorboard = callbacks_lib.TensorBoard(
        log_dir=config.model_dir,
        update_freq=config.log_every_steps // config.steps_per_execution,
    )
    save_on_terminate = preemption.SaveOnTerminate(
        checkpoint_state.interrupted_manager, checkpoint_state.epoch, checkpoint_state.epoch_step,
        strategy, initial_epoch_step=start.epoch_step,
    )
    callbacks = [
        *schedule_callbacks,
        tensorboard,
        callbacks_lib.EpochCheckpoint(checkpoint_state.manager, checkpoint_state.epoch),
        save_on_terminate,
        callbacks_lib.Throughput(
            train_writer, config.global_batch_size, config.log_every_steps
        ),
        callbacks_lib.AugmentedImages(
            train_writer, _augmented_sample(train_source, config)
        ),
        callbacks_lib.ConvKernels(train_writer),
        callbacks_lib.SkippedImages(
            [(log, writers[name]) for name, log in skipped_image_logs.items()],
            config.log_every_steps,
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    fit_kwargs = dict(
        # NOTE: with several replicas Keras warns "Your input ran out of data"
        # after each validation pass. The warning is harmless, and passing a
        # step count instead fails on the last, partial step.
        validation_data=validation_dataset,
        callbacks=callbacks,
        shuffle=False,  # The pipeline already shuffles the files each epoch.
        verbose=1,
    )
    history = {}
    try:
        epoch = start.epoch
        if start.epoch_step:
            logging.info(
                "Training the last %d of the %d steps of epoch %d.",
                steps_per_epoch - start.epoch_step, steps_per_epoch, epoch + 1,
            )
            _extend(history, model.fit(
                train_dataset, epochs=epoch + 1, initial_epoch=epoch,
                steps_per_epoch=steps_per_epoch - start.epoch_step, **fit_kwargs,
            ))
            epoch += 1
        if epoch < config.num_epochs and not (
            model.stop_training or save_on_terminate.stopped_between_epochs
        ):
            _extend(history, model.fit(
                train_dataset, epochs=config.num_epochs, initial_epoch=epoch,
                steps_per_epoch=steps_per_epoch, **fit_kwargs,
            ))
    except preemption.Preempted:
        # Keras skips on_train_end when a callback raises.
        tensorboard.on_train_end()
        save_on_terminate.on_train_end()
        raise
    finally:
        for writer in writers.values():
            writer.close()

    if save_on_terminate.stopped_between_epochs is not None:
        path = checkpoint_state.manager.latest_checkpoint
        raise preemption.Preempted(save_on_terminate.stopped_between_epochs, 0, path)
    return history


def _extend(history, keras_history):
    for name, values in keras_history.history.items():
        history.setdefault(name, []).extend(values)


@dataclasses.dataclass
class _CheckpointState:
    """Variables a checkpoint saves beside the model and optimizer, and its managers.

    Attributes:
        epoch: int64 variable, finished epochs.
        epoch_step: int64 variable, steps done in the unfinished epoch; 0
            except in a checkpoint saved on SIGTERM.
        manager: saves `checkpoints/ckpt-N` after epoch N.
        interrupted_manager: saves the checkpoint taken on SIGTERM, see
            `preemption`.
    """

    epoch: tf.Variable
    epoch_step: tf.Variable
    manager: tf.train.CheckpointManager
    interrupted_manager: tf.train.CheckpointManager


def _create_checkpoint_state(model_dir, model, optimizer, plateau_state):
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
    extra_trackables = {preemption.EPOCH_STEP_NAME: epoch_step}
    if plateau_state is not None:
        extra_trackables["lr_plateau"] = plateau_state
    manager = model_dir_lib.create_checkpoint_manager(
        model_dir, model, optimizer, epoch, extra_trackables=extra_trackables
    )
    interrupted_manager = preemption.create_interrupted_manager(manager.checkpoint, model_dir)
    return _CheckpointState(epoch, epoch_step, manager, interrupted_manager)


def _restore(checkpoint_state, restore_dir, optimizer, config, steps_per_epoch):
    """Restores the newest checkpoint of the run in `restore_dir`; returns the `_Position`."""
    interrupted = preemption.latest_interrupted(restore_dir)
    directory = (
        preemption.interrupted_dir(restore_dir) if interrupted
        else model_dir_lib.checkpoint_dir(restore_dir)
    )
    path = model_dir_lib.restore_latest(
        checkpoint_state.manager, directory, optional_names=(preemption.EPOCH_STEP_NAME,)
    )
    position = _Position(
        int(checkpoint_state.epoch.numpy()), int(checkpoint_state.epoch_step.numpy())
    )
    checkpoint_state.epoch_step.assign(0)
    if position.epoch_step >= steps_per_epoch:
        logging.warning(
            "%s was saved at step %d of epoch %d, and epochs now have %d steps: "
            "that epoch counts as done.",
            path, position.epoch_step, position.epoch + 1, steps_per_epoch,
        )
        position = _Position(position.epoch + 1)
        checkpoint_state.epoch.assign(position.epoch)
    remaining = steps_per_epoch - position.epoch_step
    if position.epoch_step and remaining % config.steps_per_execution:
        # Keras would round the rest of the epoch up to whole executions.
        raise ValueError(
            f"{path} was saved at step {position.epoch_step} of {steps_per_epoch}, and "
            f"the remaining {remaining} steps are not a multiple of "
            f"steps_per_execution={config.steps_per_execution}. Continue with the "
            "--steps_per_execution of the interrupted run, or one that divides "
            f"{remaining}; change it once this epoch is done."
        )
    if path is None:
        logging.info("No checkpoint in %s: starting from scratch.", restore_dir)
    else:
        logging.info(
            "Resuming from %s: %d of %d epochs done%s, optimizer step %d.",
            path, position.epoch, config.num_epochs,
            f" and {position.epoch_step} steps of the next" if position.epoch_step else "",
            int(optimizer.iterations.numpy()),
        )
    return position


def train_and_evaluate(config, strategy=None):
    """Trains AlexNet, continuing from the latest checkpoint, then evaluates and exports.

    Every epoch ends with a checkpoint, so running again with the same
    `model_dir` continues at the next epoch with the optimizer's momentum and
    step count, and so the learning-rate schedule, as they were. A plateau
    run also saves and restores the state of its rule. On SIGTERM the run
    saves a checkpoint after the current step and raises
    `preemption.Preempted`; running again continues from that step.

    In a multi-worker run every worker calls this with the same config. Only
    the chief writes to `model_dir` and exports; the other workers read its
    checkpoints and write theirs to a scratch folder, deleted at the end.

    Args:
        config: a `TrainConfig`.
        strategy: a `tf.distribute.Strategy`; None for `distribution.create_strategy()`.

    Returns:
        Dict of final validation metrics: `loss`, `top_1_accuracy`,
        `top_5_accuracy` (fractions in [0, 1]) and `epoch`, also written to
        `model_dir/eval_results.json`.

    Raises:
        preemption.Preempted: when SIGTERM stopped the run.
        distribution.WorkerLost: when another worker of the cluster stopped.
    """
    if config.image_size is None:
        config = dataclasses.replace(
            config, image_size=model_lib.default_image_size(config.variant)
        )
    _check_config(config)
    strategy = strategy or distribution.create_strategy()

    with distribution.reporting_lost_workers(strategy, config.model_dir):
        if distribution.is_chief(strategy):
            return _train_and_evaluate(config, strategy, restore_dir=config.model_dir)
        with distribution.scratch_directory(strategy) as scratch_dir:
            worker_config = dataclasses.replace(config, model_dir=scratch_dir, export=False)
            try:
                return _train_and_evaluate(worker_config, strategy, restore_dir=config.model_dir)
            except preemption.Preempted as stop:
                # Name the chief's copy: the scratch folder is about to go.
                chief_path = stop.path.replace(scratch_dir, config.model_dir, 1)
                raise preemption.Preempted(stop.epoch, stop.epoch_step, chief_path) from None


def _train_and_evaluate(config, strategy, restore_dir):
    """`train_and_evaluate` writing to `config.model_dir`, restoring from `restore_dir`."""
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)

    train_source, validation_source = sources.open_train_and_validation(
        config.dataset,
        config.data_dir,
        class_names_file=config.class_names_file,
        validation_labels=config.validation_labels,
        label_offset=config.label_offset,
        tfds_manual_dir=config.tfds_manual_dir,
    )
    class_names = train_source.class_names

    model_config = {
        "class_names": list(class_names),
        "image_size": config.image_size,
        "resize_size": config.resize_size,
        "dropout_rate": config.dropout_rate,
        "variant": config.variant,
    }
    # Every check that can fail comes before the first file is written, so a
    # rejected command leaves no model_config.json that would reject its fix.
    num_replicas = strategy.num_replicas_in_sync
    config = dataclasses.replace(
        config, steps_per_execution=_supported_steps_per_execution(config, num_replicas)
    )
    _check_steps_per_execution(config)
    per_replica_batch_size = distribution.per_replica_batch_size(
        config.global_batch_size, num_replicas
    )
    export_dir = config.resolved_export_dir()
    if config.export:
        serving.check_export_dir(export_dir, config.model_dir)
    model_dir_lib.save_or_check_model_config(config.model_dir, model_config)

    num_train_images = (
        train_source.num_examples if config.steps_per_epoch else _count_examples(train_source)
    )
    steps_per_epoch = _steps_per_epoch(config, num_train_images)
    logging.info(
        "Global batch %d = %d replica(s) x %d images; %d steps per epoch over %s "
        "training images; %s validation images.",
        config.global_batch_size, num_replicas, per_replica_batch_size, steps_per_epoch,
        num_train_images or "uncounted", validation_source.num_examples or "uncounted",
    )

    jit_compile = _resolve_jit_compile(config, strategy)
    plateau_state = None
    with strategy.scope():
        if config.lr_schedule == schedules.PLATEAU:
            plateau_state = schedules.PlateauState()
        model, optimizer = _build_and_compile(
            config, len(class_names), steps_per_epoch, jit_compile, plateau_state
        )
    checkpoint_state = _create_checkpoint_state(
        config.model_dir, model, optimizer, plateau_state
    )
    start = _restore(checkpoint_state, restore_dir, optimizer, config, steps_per_epoch)

    skipped_image_logs = {
        "train": bad_images_lib.BadImageLog(f"training split of {train_source.description}"),
        "validation": bad_images_lib.BadImageLog(
            f"validation split of {validation_source.description}"
        ),
    }
    pipeline_kwargs = {
        "image_size": config.image_size,
        "resize_size": config.resize_size,
        "seed": config.seed,
        "options": config.input_options(),
    }
    train_dataset = input_pipeline.distribute_dataset(
        strategy, train_source, config.global_batch_size, training=True,
        pca_stddev=config.pca_stddev, bad_images=skipped_image_logs["train"],
        **pipeline_kwargs,
    )
    validation_dataset = input_pipeline.distribute_dataset(
        strategy, validation_source, config.global_batch_size, training=False,
        bad_images=skipped_image_logs["validation"], **pipeline_kwargs,
    )

    history_logs = None
    if start.epoch < config.num_epochs:
        history_logs = _fit(
            config, model, checkpoint_state, train_source,
            train_dataset, validation_dataset, steps_per_epoch, start,
            skipped_image_logs, strategy, plateau_state,
        )
    else:
        logging.info(
            "Training already finished: %d of %d epochs done. Pass a larger "
            "--num_epochs to train longer.", start.epoch, config.num_epochs,
        )

    results = _final_metrics(model, history_logs, validation_dataset)
    results["epoch"] = int(checkpoint_state.epoch.numpy())
    model_dir_lib.write_json(
        os.path.join(config.model_dir, model_dir_lib.EVAL_RESULTS_FILE), results
    )
    logging.info(
        "Validation after epoch %d: top-1 %.4f, top-5 %.4f, loss %.4f.",
        results["epoch"], results["top_1_accuracy"], results["top_5_accuracy"], results["loss"],
    )

    if config.export:
        serving.export_from_checkpoint(config.model_dir, export_dir)
    return results
