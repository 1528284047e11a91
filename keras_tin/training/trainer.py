"""`train(config)`: build the model and data for a benchmark and run `model.fit`.

Used as is by `keras-tin train` and by every script in examples/.

Writes into ``config.output_dir``::

    config.json                 the full TrainConfig of the run
    labels.txt                  class names, one per line (read by evaluate/predict)
    checkpoints/epoch_NNN.weights.h5   every epoch
    backup/                     BackupAndRestore state; rerun the same command to resume
    best.keras                  the best epoch by validation accuracy (mAP-like PR-AUC
                                for multi-label), a full model for evaluate/predict
    model.keras                 the model after the last epoch
    log.csv                     per-epoch loss, metrics and learning rate
    tensorboard/                with config.tensorboard
"""

import dataclasses
import json
import os
import warnings

import keras

from keras_tin.training import checks
from keras_tin.training import distribute
from keras_tin.training import optimizers
from keras_tin.training.config import TrainConfig

TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".pt.tar")


@dataclasses.dataclass
class TrainResult:
    model: object
    history: dict
    classes: list
    output_dir: str


def resize_short_for(image_size):
    """The test-time short side: 256 for 224 crops, scaled the same way for other sizes."""
    return int(round(image_size * 256 / 224))


def build_datasets(config, num_replicas=1):
    """``(train_ds, val_ds or None, train_info)`` with the global batch size."""
    from keras_tin.data import load_dataset

    checks.check_dataset(config.dataset, config.root)
    checks.check_split(config.train_split, "train_split")
    if config.val_split:
        checks.check_split(config.val_split, "val_split")
    global_batch = config.batch_size * num_replicas
    common = dict(frames=config.frames, image_size=config.image_size, sampling=config.sampling,
                  fold=config.fold, backend=config.decoder, seed=config.seed, with_info=True)
    train_ds, info = load_dataset(config.dataset, config.root, split=config.train_split,
                                  training=True, batch_size=global_batch, flip=config.flip,
                                  cache=config.cache, **common)
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    val_ds = None
    if config.val_split:
        val_ds, _ = load_dataset(config.dataset, config.root, split=config.val_split,
                                 training=False, batch_size=global_batch, shuffle=False,
                                 deterministic=True, cache=config.cache,
                                 resize_short=resize_short_for(config.image_size), **common)
    return train_ds, val_ds, info


def _is_pretrained_name(weights):
    from keras_tin.weights import registry

    return registry.is_pretrained_name(weights)


def _classes_in_weights_file(path):
    """The class count of the classifier kernel stored in a .weights.h5 file, else None.

    Keras names top-level layers in the file by class ("layers/dense/vars/0"); the
    classifier is the model's only top-level Dense (TIN's own Dense layers are nested).
    """
    import h5py

    found = []

    def visit(name, obj):
        parts = name.split("/")
        if (isinstance(obj, h5py.Dataset) and len(parts) == 4 and parts[0] == "layers"
                and parts[1].startswith("dense") and obj.ndim == 2):
            found.append(obj.shape[-1])

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found[0] if len(found) == 1 else None


def _transfer(source, model, verbose=True):
    """Copies every layer's weights by name except the classifier ``fc`` (timm-style head drop)."""
    copied = 0
    for layer in model.layers:
        if layer.name == "fc" or not layer.weights:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        layer.set_weights(other.get_weights())
        copied += 1
    if verbose:
        print(f"Initialised {copied} layers from '{source.name}'; the classifier "
              f"({source.output_shape[-1]} classes) was dropped for a new "
              f"{model.output_shape[-1]}-class one.")


def init_weights(model, weights, config, verbose=True):
    """Loads a local .keras / .weights.h5 file; a classifier of another class count is dropped."""
    from keras_tin.applications import TemporalResNet

    path = os.fspath(weights)
    if not os.path.exists(path):
        raise ValueError(f"weights must be a pretrained name or an existing file. Received: "
                         f"weights={weights!r}. See keras_tin.weights.list_pretrained().")
    classes = model.output_shape[-1]
    if path.endswith(".keras"):
        source = keras.saving.load_model(path, compile=False)
        checks.check_frames(source, checks.model_frames(model), f"the model being built")
        if source.output_shape[-1] == classes:
            model.set_weights(source.get_weights())
        else:
            _transfer(source, model, verbose)
        return model
    stored = _classes_in_weights_file(path) if path.endswith(".h5") else None
    if stored is not None and stored != classes:
        source = build_model(config.replace(weights=None), stored, compile=False)
        source.load_weights(path)
        _transfer(source, model, verbose)
        return model
    model.load_weights(path)
    return model


def build_model(config, num_classes, compile=True, num_replicas=1):
    """The temporal ResNet of the config (initialised from ``config.weights``), compiled."""
    from keras_tin.applications import TemporalResNet
    from keras_tin.applications import freeze_batchnorm

    by_constructor = config.weights is not None and (
        _is_pretrained_name(config.weights) or str(config.weights).endswith(TORCH_SUFFIXES))
    model = TemporalResNet(
        config.temporal, config.depth, frames=config.frames,
        input_shape=(config.frames, config.image_size, config.image_size, 3),
        classes=num_classes, classifier_activation="sigmoid" if config.multilabel else "softmax",
        dropout_rate=config.dropout, implementation=config.implementation,
        base_filters=config.base_filters, weights=config.weights if by_constructor else None,
        name=f"{config.temporal}_resnet{config.depth}")
    if config.weights is not None and not by_constructor:
        init_weights(model, config.weights, config, verbose=config.verbose > 0)
    if config.partial_bn:
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
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                   keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes),
                                                               name="top5")]
    model.compile(optimizer=optimizers.build_optimizer(config, num_replicas), loss=loss,
                  metrics=metrics)
    return model


def make_callbacks(config, num_replicas=1, validation=True):
    out = config.output_dir
    backup = os.path.join(out, "backup")
    resuming = os.path.isdir(backup)
    lr = optimizers.scaled_lr(config, num_replicas)
    callbacks = [
        keras.callbacks.LearningRateScheduler(
            optimizers.step_schedule(lr, config.lr_steps, config.lr_decay)),
        keras.callbacks.BackupAndRestore(backup),
        keras.callbacks.ModelCheckpoint(
            os.path.join(out, "checkpoints", "epoch_{epoch:03d}.weights.h5"),
            save_weights_only=True),
        keras.callbacks.CSVLogger(os.path.join(out, "log.csv"), append=resuming),
    ]
    if validation:
        monitor = "val_pr_auc" if config.multilabel else "val_accuracy"
        callbacks.append(keras.callbacks.ModelCheckpoint(
            os.path.join(out, "best.keras"), monitor=monitor, mode="max", save_best_only=True))
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, "tensorboard")))
    return callbacks


def write_labels(path, classes):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(str(c) for c in classes) + "\n")


def _worker_config(config, dist):
    """Multi-worker runs: every worker saves (saving is collective), but only the chief into
    ``output_dir``; worker N uses ``output_dir/workers/N`` (TF's multi-worker advice)."""
    resolver = getattr(dist.strategy, "cluster_resolver", None)
    if dist.name != "multi_worker" or resolver is None:
        return config
    task_type, task_id = resolver.task_type, resolver.task_id
    chief = task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())
    if chief:
        return config
    return config.replace(output_dir=os.path.join(config.output_dir, "workers",
                                                  f"{task_type}_{task_id}"))


def train(config, callbacks=()):
    """Trains ``config``'s model with `model.fit`; resumes from ``output_dir/backup`` if present.

    Args:
      config: a `TrainConfig`.
      callbacks: extra Keras callbacks, run after the built-in ones' list.

    Returns:
      `TrainResult` (model, history dict, class names, output folder).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig. Received: {type(config).__name__}")
    keras.utils.set_random_seed(config.seed)
    dist = distribute.make_distribution(config.strategy)
    config = _worker_config(config, dist)
    os.makedirs(os.path.join(config.output_dir, "checkpoints"), exist_ok=True)
    config.save(os.path.join(config.output_dir, "config.json"))
    train_ds, val_ds, info = build_datasets(config, dist.num_replicas)
    classes = list(info.classes)
    write_labels(os.path.join(config.output_dir, "labels.txt"), classes)
    if config.verbose:
        print(f"{info.name} {info.split}: {len(info.samples)} videos, {len(classes)} classes; "
              f"{dist.num_replicas} replica(s), global batch "
              f"{config.batch_size * dist.num_replicas}, lr "
              f"{optimizers.scaled_lr(config, dist.num_replicas):g}")
    with dist.scope():
        model = build_model(config, len(classes), num_replicas=dist.num_replicas)
    with warnings.catch_warnings():
        if not config.steps_per_epoch:
            # The pipeline skips bad videos, so its length is unknown until the first epoch
            # ends; Keras then warns that the input "ran out of data", which is expected here.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(
            train_ds, validation_data=val_ds, epochs=config.epochs, shuffle=False,
            steps_per_epoch=config.steps_per_epoch,
            validation_steps=config.validation_steps if val_ds is not None else None,
            callbacks=(make_callbacks(config, dist.num_replicas, val_ds is not None)
                       + list(callbacks)),
            verbose=config.verbose)
    model.save(os.path.join(config.output_dir, "model.keras"))
    logs = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    with open(os.path.join(config.output_dir, "history.json"), "w", encoding="utf-8") as f:
        json.dump(logs, f, indent=2)
    return TrainResult(model, logs, classes, config.output_dir)
