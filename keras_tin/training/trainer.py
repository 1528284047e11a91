"""`train(config)`: build the model and data for a benchmark and run `model.fit`.

Used as is by `keras-tin train` and by every script in examples/.

Writes into ``config.output_dir``::

    config.json                 the full TrainConfig of the run
    labels.txt                  class names, one per line (read by evaluate/predict)
    checkpoints/epoch_NNN.weights.h5   every epoch (model and optimizer)
    log.csv                     per-epoch loss, metrics and learning rate, every epoch
    history.json                the same, one list per metric, every epoch
    best.keras                  the best epoch by validation accuracy (mAP-like PR-AUC
                                for multi-label), a full model for evaluate/predict
    backup/epoch_NNN.weights.h5 the resume point while the run is unfinished
    state.json                  epochs done, best value and epoch; commits each epoch
    model.keras                 the model after the last epoch
    tensorboard/                with config.tensorboard

Every file is written atomically and in an order that lets a rerun of the same command
after a kill (at any point) redo exactly what is missing: see
`keras_tin.training.run_folder`. A rerun of a finished run trains nothing.

Failures the user must act on raise `checks.TrainingError` subclasses: the loss became
NaN (`TrainingDiverged`, naming the epoch and batch), or an epoch had no batch because
every video was skipped (`NoUsableData`, with the skip report). `keras-tin train` prints
them, and bad settings, as one line.
"""

import dataclasses
import os
import warnings

import keras

from keras_tin.training import callbacks as run_callbacks
from keras_tin.training import checks
from keras_tin.training import distribute
from keras_tin.training import optimizers
from keras_tin.training import run_folder
from keras_tin.training.config import TrainConfig

TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".pt.tar", ".pyth")  # .pyth: TAdaConv / pySlowFast


@dataclasses.dataclass
class TrainResult:
    """``history``: every epoch of the run (what log.csv and history.json hold), also those
    trained before a resume; ``initial_epoch``: the epochs done when this call started."""

    model: object
    history: dict
    classes: list
    output_dir: str
    initial_epoch: int = 0
    epochs_done: int = 0
    data_summary: str = ""


def resize_short_for(image_size):
    """The test-time short side: 256 for 224 crops, scaled the same way for other sizes."""
    return int(round(image_size * 256 / 224))


def build_datasets(config, num_replicas=1, errors=None, shard=None):
    """``(train_ds, val_ds or None, train_info)`` with the global batch size.

    ``shard=(num_workers, worker_index)`` (multi-worker runs): this worker's videos only,
    batched at its part of the global batch (see `keras_tin.data.build_dataset`).

    Both splits record skipped videos and decode notes into one `ErrorLog` (``errors``, by
    default a new one with ``config.on_error`` and ``config.report``): ``train_info.errors``.
    The validation split's `DatasetInfo` is ``train_info.val_info`` (None without one).
    """
    from keras_tin.data import ErrorLog
    from keras_tin.data import build_dataset
    from keras_tin.data import list_samples

    checks.check_dataset(config.dataset, config.root)
    checks.check_split(config.train_split, "train_split")
    if config.val_split:
        checks.check_split(config.val_split, "val_split")
    if errors is None:
        errors = ErrorLog(config.on_error, config.report)
    global_batch = config.batch_size * num_replicas
    if shard is not None and global_batch % shard[0]:
        raise ValueError(f"the global batch {global_batch} does not split over {shard[0]} "
                         f"workers; use a batch size per replica that does")
    common = dict(frames=config.frames, image_size=config.image_size, sampling=config.sampling,
                  backend=config.decoder, seed=config.seed, cache=config.cache,
                  batch_size=global_batch // (shard[0] if shard else 1), shard=shard)
    info = list_samples(config.dataset, config.root, config.train_split, fold=config.fold,
                        errors=errors)
    train_ds = build_dataset(info, training=True, flip=config.flip,
                             deterministic=True if config.deterministic else None,
                             service=config.data_service, **common)
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    val_ds, info.val_info = None, None
    if config.val_split:
        info.val_info = list_samples(config.dataset, config.root, config.val_split,
                                     fold=config.fold, errors=errors)
        val_ds = build_dataset(info.val_info, training=False, shuffle=False, deterministic=True,
                               resize_short=resize_short_for(config.image_size), **common)
    return train_ds, val_ds, info


def _is_pretrained_name(weights):
    from keras_tin.weights import registry

    return registry.is_pretrained_name(weights)


def init_weights(model, weights, verbose=True):
    """Loads a local .keras / .weights.h5 file (keras_tin.weights.load_weights: matched by
    layer and variable name, all or nothing; a classifier of another class count is
    dropped with a message)."""
    from keras_tin.weights.loading import load_weights
    from keras_tin.weights.loading import transfer_weights

    path = os.fspath(weights)
    if not os.path.exists(path):
        raise ValueError(f"weights must be a pretrained name or an existing file. Received: "
                         f"weights={weights!r}. See keras_tin.weights.list_pretrained().")
    if path.endswith(".keras"):
        source = keras.saving.load_model(path, compile=False)
        checks.check_frames(source, checks.model_frames(model), "the model being built")
        return transfer_weights(source, model, verbose=verbose)
    return load_weights(model, path, verbose=verbose)


def build_model(config, num_classes, compile=True, num_replicas=1):
    """The temporal ResNet of the config (initialised from ``config.weights``), compiled."""
    from keras_tin.applications import freeze_batchnorm
    from keras_tin import architectures
    from keras_tin.applications.records import build_for_architecture

    by_constructor = config.weights is not None and (
        _is_pretrained_name(config.weights) or str(config.weights).endswith(TORCH_SUFFIXES))
    kwargs = dict(frames=config.frames,
                  input_shape=(config.frames, config.image_size, config.image_size, 3),
                  classes=num_classes,
                  classifier_activation="sigmoid" if config.multilabel else "softmax",
                  dropout_rate=config.dropout, implementation=config.implementation,
                  weights=config.weights if by_constructor else None,
                  name=config.architecture())
    parsed = architectures.parse(config.architecture())
    if parsed.standalone:  # its own builder: no temporal implementation or base width
        kwargs.pop("implementation")
    elif parsed.backbone != "mobilenetv2":
        kwargs["base_filters"] = config.base_filters
    if config.online:  # TrainConfig allows it for tsm_mobilenetv2 only
        kwargs["online"] = True
    model = build_for_architecture(config.architecture(), **kwargs)
    if config.weights is not None and not by_constructor:
        init_weights(model, config.weights, verbose=config.verbose > 0)
    if config.use_partial_bn():
        freeze_batchnorm(model)
    if compile:
        compile_model(model, config, num_classes, num_replicas)
    return model


def compile_model(model, config, num_classes, num_replicas=1):
    if config.multilabel:
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes,
                                     name="pr_auc")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if num_classes > 5:  # with 5 classes or fewer top-5 is always 1
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    model.compile(optimizer=optimizers.build_optimizer(config, num_replicas), loss=loss,
                  metrics=metrics)
    return model


def monitor_of(config):
    """The metric best.keras is chosen by."""
    return "val_pr_auc" if config.multilabel else "val_accuracy"


def write_labels(path, classes):
    run_folder.write_text(path, "\n".join(str(c) for c in classes) + "\n")


def _worker_config(config, dist):
    """Multi-worker runs: the chief alone writes ``output_dir`` (saving reads each
    variable's local copy, no collective); the others read its state and backup on a
    rerun, and keep their own skip report (``report`` + ``.worker<N>``)."""
    if dist.is_chief or not config.report:
        return config
    return config.replace(report=f"{config.report}.worker{dist.worker_index}")


def _identity(config, classes=None):
    """What a resumed run must share with the run it resumes: the fields that shape the
    saved weights, and the class names."""
    identity = {name: getattr(config, name) for name in run_folder.MODEL_FIELDS}
    if classes is not None:
        identity["classes"] = [str(c) for c in classes]
    return identity


def _check_same_run(state, identity, folder):
    stored = state.get("run") or {}
    changed = [k for k in identity if k in stored and stored[k] != identity[k]]
    if not changed:
        return
    parts = []
    for k in changed:
        if k == "classes":
            parts.append(f"classes: {len(stored[k])} there, {len(identity[k])} now"
                         if len(stored[k]) != len(identity[k]) else "class names differ")
        else:
            parts.append(f"{k}={stored[k]!r} there, {identity[k]!r} now")
    raise ValueError(f"output_dir {folder.root!r} holds a run of another model or dataset "
                     f"({'; '.join(parts)}). Rerun with that run's settings to resume it, or "
                     f"pass another --output-dir.")


def _refuse_foreign_outputs(folder):
    """A folder without state.json: refuse one that holds a run we could only overwrite."""
    legacy = os.path.join(folder.backup, "training_metadata.json")
    if os.path.isfile(legacy):
        raise ValueError(f"output_dir {folder.root!r} holds a backup written by an older "
                         f"keras-tin (Keras BackupAndRestore), which this version cannot "
                         f"resume. Pass another --output-dir, or delete {folder.backup} to "
                         f"start over there.")
    rows = run_folder.read_log(folder.path(run_folder.LOG))
    if os.path.isfile(folder.path(run_folder.FINAL)) or any(r["epoch"] >= 1 for r in rows):
        raise ValueError(f"output_dir {folder.root!r} already holds a training run without "
                         f"resume state (model.keras or {len(rows)} rows in log.csv); "
                         f"training there would overwrite it. Pass another --output-dir, or "
                         f"delete that folder first.")


def _restore(folder, model, state, verbose, writer=True):
    """Loads the committed epoch's backup into ``model`` and undoes what an uncommitted
    epoch wrote (``writer``: the process that writes the folder; the other workers of a
    multi-worker run only read it); returns the log rows of the committed epochs."""
    done = state["epochs_done"]
    rows = [r for r in run_folder.read_log(folder.path(run_folder.LOG)) if r["epoch"] < done]
    if len(rows) < done and verbose:
        print(f"Warning: {folder.path(run_folder.LOG)} holds {len(rows)} of the {done} finished "
              f"epochs (was it edited?); the missing rows stay missing.")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    later = {e: p for e, p in run_folder.epoch_files(folder.checkpoints).items() if e > done}
    if later and writer:
        # epoch done+1 was being written when the run stopped: best.keras may be that
        # epoch's, which the rerun of the epoch may not beat; put back the committed best
        best = folder.path(run_folder.BEST)
        best_epoch = state.get("best_epoch")
        source = folder.checkpoint_path(best_epoch) if best_epoch else None
        if source and os.path.isfile(source):
            model.load_weights(source)
            folder.save_model(model, best)
        elif best_epoch is None and os.path.isfile(best):
            os.remove(best)
        elif verbose:
            print(f"Warning: cannot check {best}: {source} is missing.")
        for path in later.values():
            os.remove(path)
    backup = folder.path(state.get("backup") or "")
    if not os.path.isfile(backup):
        backup = folder.checkpoint_path(done)  # the same weights, model and optimizer
    if not os.path.isfile(backup):
        raise ValueError(f"cannot resume {folder.root!r}: state.json says {done} epochs are done "
                         f"but neither {state.get('backup')} nor "
                         f"{os.path.relpath(backup, folder.root)} exists. Pass another "
                         f"--output-dir, or delete {folder.path(run_folder.STATE)} to start "
                         f"over there.")
    model.load_weights(backup)
    if writer:
        folder.prune_backups(done)
    return rows


def data_summary(info):
    """One line: videos per split, what was skipped and noted, and where the report is."""
    errors = info.errors
    val = getattr(info, "val_info", None)
    text = f"Data: {len(info.samples)} training videos"
    if val is not None:
        text += f", {len(val.samples)} validation videos"
    text += f"; {errors.summary()}"
    if errors.num_skipped or errors.note_counts():
        text += (f"; listed in {errors.report_path}" if errors.report_path else
                 "; --report PATH lists the files")
    return text


@dataclasses.dataclass
class PreparedRun:
    """A run with its data listed, its model built and its resume point restored."""

    config: TrainConfig
    folder: object
    dist: object = None
    model: object = None
    train_ds: object = None
    val_ds: object = None
    info: object = None
    state: dict = None
    rows: list = dataclasses.field(default_factory=list)
    result: TrainResult = None  # set when the run had finished before: nothing to train


def _already_finished(config, folder, state, writer=True):
    import keras_tin.applications  # noqa: F401  (registers the layers for loading)

    _check_same_run(state, _identity(config), folder)
    done = state["epochs_done"]
    if config.epochs > done and not state.get("stopped_early"):
        raise ValueError(f"output_dir {folder.root!r} holds a run that finished after {done} "
                         f"epochs; --epochs {config.epochs} cannot continue it. To train "
                         f"longer, start another --output-dir with --weights "
                         f"{folder.path(run_folder.FINAL)}.")
    if writer:
        folder.remove_backup()  # a kill between the final state and its removal leaves it
    with open(folder.path("labels.txt"), encoding="utf-8") as f:
        classes = [line for line in f.read().split("\n") if line]
    rows = run_folder.read_log(folder.path(run_folder.LOG))
    model = keras.saving.load_model(folder.path(run_folder.FINAL))
    if config.verbose:
        print(f"{folder.root} holds a finished run ({done} epochs): nothing to train.")
    return TrainResult(model, run_folder.history_of(rows), classes, folder.root,
                       initial_epoch=done, epochs_done=done)


def prepare_run(config, build_data=None, build=None):
    """Everything before `model.fit`: the data, the model, and the resume point.

    The mistakes a user can make (a wrong root, bad settings, no videos, unknown weights,
    another run in ``output_dir``) raise here, before any training.

    Args:
      config: a `TrainConfig`.
      build_data: ``(config, num_replicas) -> (train_ds, val_ds, info)``, default
        `build_datasets` (``info`` as it returns: ``classes``, ``samples``, ``errors``,
        ``val_info``).
      build: ``(config, num_classes, num_replicas=) -> compiled model``, default
        `build_model`. Both let other data or models use the same resumable run folder.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig. Received: {type(config).__name__}")
    keras.utils.set_random_seed(config.seed)
    dist = distribute.make_distribution(config.strategy, devices=config.devices)
    config = _worker_config(config, dist)
    folder = run_folder.RunFolder(config.output_dir)
    run_folder.start_counting()
    state = folder.read_state()
    if state is not None and state.get("finished"):
        return PreparedRun(config, folder, result=_already_finished(config, folder, state,
                                                                        dist.is_chief))
    if state is None and os.path.isdir(folder.root) and dist.is_chief:
        _refuse_foreign_outputs(folder)
    if build_data is None:
        train_ds, val_ds, info = build_datasets(config, dist.num_replicas,
                                                shard=dist.input_shard())
    else:
        train_ds, val_ds, info = build_data(config, dist.num_replicas)
    train_ds, val_ds = dist.distribute_dataset(train_ds), dist.distribute_dataset(val_ds)
    classes = list(info.classes)
    identity = _identity(config, classes)
    if state is not None:
        _check_same_run(state, identity, folder)
    if dist.is_chief:
        os.makedirs(folder.checkpoints, exist_ok=True)
        run_folder.remove_temporaries(folder.root, folder.checkpoints, folder.backup)
        config.save(folder.path("config.json"))
        write_labels(folder.path("labels.txt"), classes)
    if config.verbose:
        print(f"{info.name} {info.split}: {len(info.samples)} videos, {len(classes)} classes; "
              f"{dist.num_replicas} replica(s), global batch "
              f"{config.batch_size * dist.num_replicas}, lr "
              f"{optimizers.scaled_lr(config, dist.num_replicas):g}")
    with dist.scope():
        model = (build or build_model)(config, len(classes), num_replicas=dist.num_replicas)
        rows = []
        if state is not None:
            rows = _restore(folder, model, state, config.verbose, writer=dist.is_chief)
    state = {"run": identity, "epochs_done": 0, "best": None, "best_epoch": None,
             **(state or {})}
    state["run"], state["epochs"] = identity, config.epochs
    if config.verbose and state["epochs_done"]:
        best = (f"; best {monitor_of(config)} {state['best']:.4f} at epoch {state['best_epoch']}"
                if state.get("best") is not None else "")
        print(f"Resuming {folder.root} after epoch {state['epochs_done']} of "
              f"{config.epochs}{best}")
    return PreparedRun(config, folder, dist, model, train_ds, val_ds, info, state, rows)


def _as_data_error(error):
    from keras_tin.data import errors

    convert = getattr(errors, "as_data_error", None)
    return convert(error) if convert is not None else None


def fit_run(run, callbacks=()):
    """`model.fit` from the resume point to ``config.epochs``, then model.keras; see `train`."""
    if run.result is not None:
        return run.result
    config, model, folder, info = run.config, run.model, run.folder, run.info
    validation = run.val_ds is not None
    monitor = monitor_of(config) if validation else None
    initial = run.state["epochs_done"]
    lr = optimizers.scaled_lr(config, run.dist.num_replicas)
    recorder = run_callbacks.EpochRecorder(folder, run.rows, run.state, monitor,
                                           writer=run.dist.is_chief)
    built_in = [
        keras.callbacks.LearningRateScheduler(
            optimizers.step_schedule(lr, config.lr_steps, config.lr_decay)),
        run_callbacks.TrainMetricsFromLastBatch(),
        run_callbacks.NaNGuard(lr, lambda: recorder.epochs_done),
        run_callbacks.DataWatch(info.errors, info, config.batch_size * run.dist.num_replicas,
                                getattr(info, "val_info", None), info.errors.report_path,
                                config.verbose),
        recorder,
    ]
    if config.tensorboard:
        built_in.append(keras.callbacks.TensorBoard(folder.path("tensorboard")))
    if initial < config.epochs:
        with warnings.catch_warnings():
            if not config.steps_per_epoch:
                # The pipeline skips bad videos, so its length is unknown until the first epoch
                # ends; Keras then warns that the input "ran out of data", which is expected.
                warnings.filterwarnings("ignore", message="Your input ran out of data")
            try:
                model.fit(
                    run.train_ds, validation_data=run.val_ds, epochs=config.epochs,
                    initial_epoch=initial, shuffle=False, steps_per_epoch=config.steps_per_epoch,
                    validation_steps=config.validation_steps if validation else None,
                    callbacks=built_in + list(callbacks), verbose=config.verbose)
            except Exception as e:
                data_error = _as_data_error(e)
                if data_error is not None and data_error is not e:
                    raise data_error from e
                lost = distribute.lost_worker_error(e, run.dist, recorder.epochs_done)
                if lost is not None:
                    raise lost from e
                raise
    state = dict(recorder.state, finished=True)
    if state["epochs_done"] < config.epochs:
        state["stopped_early"] = True
    if run.dist.is_chief:
        folder.save_model(model, folder.path(run_folder.FINAL))
        folder.write_state(state)
        folder.remove_backup()
    summary = data_summary(info)
    if config.verbose:
        print(summary)
    return TrainResult(model, run_folder.history_of(recorder.rows), list(info.classes),
                       folder.root, initial_epoch=initial, epochs_done=state["epochs_done"],
                       data_summary=summary)


def train(config, callbacks=(), build_data=None, build=None):
    """Trains ``config``'s model with `model.fit`; resumes an interrupted run in
    ``output_dir`` (rerun the same command), and trains nothing for a finished one.

    Args:
      config: a `TrainConfig`.
      callbacks: extra Keras callbacks, run after the built-in ones' list.
      build_data, build: other data or model builders (see `prepare_run`).

    Returns:
      `TrainResult` (model, history of every epoch, class names, output folder).

    Raises:
      ValueError / FileNotFoundError: bad settings, no data, another run in ``output_dir``.
      checks.TrainingDiverged: the loss became NaN or infinite.
      checks.NoUsableData: an epoch had no batch (every video skipped).
      keras_tin.data.DataError: a bad video under ``on_error="raise"``.
    """
    return fit_run(prepare_run(config, build_data, build), callbacks)
