"""`weights=` for keras_tin models: a manifest name, a Keras weights file or a PyTorch checkpoint."""

import os
import warnings

import numpy as np

from keras_tin.weights import convert
from keras_tin.weights import registry

TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".pt.tar")
NORMALIZATION_MEANS = {"imagenet": (123.675, 116.28, 103.53), "inception": (127.5, 127.5, 127.5)}


def _model_normalization(model):
    """'imagenet', 'inception', None (no layer) or 'other' for the model's input layer."""
    try:
        layer = model.get_layer("normalization")
    except ValueError:
        return None
    mean = getattr(layer, "input_mean", None)
    if mean is None:
        return "other"
    for name, ref in NORMALIZATION_MEANS.items():
        if np.allclose(np.ravel(mean), ref):
            return name
    return "other"


def _check_record_against_model(model, record):
    wanted = record.get("normalization")
    have = _model_normalization(model)
    if wanted and have != wanted:
        inside = "no normalization layer" if have is None else f"normalization={have!r}"
        warnings.warn(
            f"'{record['name']}' was trained on inputs normalised as {wanted!r} "
            f"(mean {record.get('mean')}, std {record.get('std')}), but model '{model.name}' "
            f"has {inside}. Build it with normalization={wanted!r} to feed 0-255 RGB, or "
            f"normalise inputs yourself.", stacklevel=3)
    frames = record.get("frames")
    model_frames = model.input_shape[1] if len(model.input_shape) == 5 else None
    if frames and model_frames and frames != model_frames:
        warnings.warn(f"'{record['name']}' was trained with {frames} frames per clip; model "
                      f"'{model.name}' takes {model_frames}.", stacklevel=3)


def load_weights(model, weights, allow_unverified=False, use_torch=False, verbose=True,
                 cache_dir=None):
    """Loads `weights` into `model` and returns the model.

    Args:
        model: a keras_tin temporal ResNet.
        weights: None; a manifest name (keras_tin.weights.list_pretrained()), downloaded
            into the Keras cache and hash-checked; a local .weights.h5 / .keras file; or a
            local PyTorch .pth/.pt checkpoint, converted on the fly. A classifier with a
            different class count is dropped with a message; the backbone still loads.
        allow_unverified: accept a manifest checkpoint that has no published hash.
        use_torch: read PyTorch files with torch.load(weights_only=True).
        verbose: print what was dropped or left at initialisation.
        cache_dir: download directory (default: the Keras cache, ~/.keras).
    """
    if weights is None:
        return model
    if registry.is_pretrained_name(weights):
        record = registry.get_record(weights)
        _check_record_against_model(model, record)
        path = registry.download(weights, cache_dir=cache_dir,
                                 allow_unverified=allow_unverified)
        convert.load_torch_checkpoint(model, path, layout=record["layout"], use_torch=use_torch,
                                      verbose=verbose)
        return model
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise ValueError(
            "weights must be None, a pretrained name, or an existing .weights.h5 / .keras / "
            f".pth / .pt file. Received: weights={weights!r} (no such file or name). "
            f"Pretrained names: {registry.list_pretrained()}")
    if path.endswith(TORCH_SUFFIXES):
        convert.load_torch_checkpoint(model, path, use_torch=use_torch, verbose=verbose)
    elif path.endswith(".keras"):
        import keras
        source = keras.saving.load_model(path, compile=False)
        model.set_weights(source.get_weights())
    elif path.endswith(".h5"):
        model.load_weights(path)
    else:
        raise ValueError(f"Unsupported weights file {path!r}: expected .weights.h5, .keras, "
                         f".pth or .pt.")
    return model


def pretrained(name, allow_unverified=False, **kwargs):
    """Builds the model a manifest checkpoint needs (architecture, frames, classes,
    normalisation from its record) and loads it. kwargs go to TemporalResNet."""
    from keras_tin.applications.temporal_resnet import TemporalResNet

    record = registry.get_record(name)
    if record["architecture"] == "resnet50":
        raise ValueError(f"'{name}' is an image backbone: build a temporal ResNet-50 and pass "
                         f"weights={name!r} to initialise it.")
    temporal, depth = convert.parse_architecture(record["architecture"])
    kwargs.setdefault("frames", record["frames"])
    kwargs.setdefault("classes", record["classes"])
    kwargs.setdefault("normalization", record["normalization"])
    model = TemporalResNet(temporal, depth, **kwargs)
    return load_weights(model, name, allow_unverified=allow_unverified)
