"""`weights=` for keras_tin models: a manifest name, a Keras weights file or a PyTorch checkpoint.

This module does not import keras_tin.applications: the model builders depend on it, not
the reverse. Where a model must be built for a manifest record (a published keras_tin
conversion is loaded into a model of the record's architecture first), the caller passes
`build_source` (keras_tin.applications.records.build_for_record); `build_for_record` and
`pretrained` here are thin wrappers that import the applications side when called.
"""

import os
import warnings

import numpy as np

from keras_tin.weights import convert
from keras_tin.weights import registry

TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".pt.tar", ".pyth")  # .pyth: TAdaConv / pySlowFast
NORMALIZATION_MEANS = {"imagenet": (123.675, 116.28, 103.53), "inception": (127.5, 127.5, 127.5),
                       "tadaconv": (114.75, 114.75, 114.75),
                       "kinetics": (110.2008, 100.63983, 95.99475)}  # torchvision video, VMZ


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


def _model_non_local(model):
    """The non-local mode of a keras_tin model's blocks, or None."""
    from keras_tin.layers import NonLocalAttention

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, NonLocalAttention):
            return layer.mode
    return None


def _check_record_against_model(model, record):
    wanted_nl, have_nl = record.get("non_local"), _model_non_local(model)
    if wanted_nl != have_nl:
        has = "non-local blocks" if wanted_nl else "no non-local blocks"
        built = f"non_local={have_nl!r}" if have_nl else "no non-local blocks"
        raise ValueError(f"'{record['name']}' has {has} (non_local={wanted_nl!r}) but model "
                         f"'{model.name}' was built with {built}; build it with "
                         f"non_local={wanted_nl!r}.")
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
                 cache_dir=None, build_source=None):
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
        build_source: record -> keras model, for manifest records published as keras_tin
            conversions (default: keras_tin.applications.records.build_for_record).
    """
    if weights is None:
        return model
    if registry.is_pretrained_name(weights):
        record = registry.get_record(weights)
        _check_record_against_model(model, record)
        if record.get("converted_url"):  # a published keras_tin conversion: no torch file
            path = registry.download(weights, cache_dir=cache_dir,
                                     allow_unverified=allow_unverified, converted=True)
            source = (build_source or build_for_record)(record)
            source.load_weights(path)
            transfer_weights(source, model, verbose=verbose)
            return model
        path = registry.download(weights, cache_dir=cache_dir,
                                 allow_unverified=allow_unverified)
        convert.load_torch_checkpoint(model, path, layout=record["layout"], use_torch=use_torch,
                                      verbose=verbose)
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, a pretrained name or a file path. Received: "
                        f"weights={weights!r} of type {type(weights).__name__}.")
    path = os.fspath(weights)
    if os.path.isdir(path):
        raise ValueError(f"weights={weights!r} is a directory; expected a .weights.h5, .keras, "
                         f".pth or .pt file (a SavedModel folder cannot be loaded as weights).")
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
        transfer_weights(source, model, verbose=verbose)
    elif path.endswith(".h5"):
        _load_weights_file(model, path, verbose)
    else:
        raise ValueError(f"Unsupported weights file {path!r}: expected .weights.h5, .keras "
                         f"or a PyTorch checkpoint ({', '.join(TORCH_SUFFIXES)}).")
    return model


def transfer_weights(source, model, verbose=True):
    """Copies every variable of keras model `source` into `model`, matched by layer and
    variable name, all or nothing, with the checkpoint converters' rules: the classifier
    is dropped with a message when the class counts differ or either model has none; a
    source without TIN modules (a TSN or an image backbone) leaves the target's TIN and
    non-local parameters at their initialisation, announced. Anything else that does not
    match raises a ValueError listing it."""
    have = convert.keras_variables(source)
    want = convert.keras_variables(model)
    fc = have.get(("fc", "kernel"))
    head_loaded = convert.load_head(model, want, None if fc is None else fc.shape[-1],
                                    verbose)
    tensors = {f"{layer}/{name}": variable.numpy() for (layer, name), variable in have.items()}
    backbone_only = not any(name.startswith(convert.TIN_VARIABLES) for _, name in have)
    assignments, problems, kept = convert.match_variables(
        tensors, want, lambda key: (*key.split("/"), None), head_loaded,
        None if backbone_only else "tin")
    if problems:
        raise ValueError(f"Cannot load '{source.name}' into model '{model.name}'; nothing was "
                         f"loaded. " + "; ".join(problems))
    convert.assign(assignments, want, kept, verbose)
    return model


def _saved_head_classes(path):
    """The class count of the single Dense layer saved in a Keras .weights.h5, or None.
    (Keras files name layers by class, e.g. layers/dense/vars/0, not by layer name.)"""
    import h5py

    with h5py.File(path, "r") as f:
        group = f.get("layers")
        kernels = [group[name]["vars"]["0"].shape for name in group
                   if name == "dense" or name.startswith("dense_")] if group else []
    return kernels[0][-1] if len(kernels) == 1 and len(kernels[0]) == 2 else None


def _load_weights_file(model, path, verbose):
    """model.load_weights, except that a file of the same network with another class count
    loads everything but the head (with a message) instead of failing on the fc shape."""
    import keras

    classes = _saved_head_classes(path)
    has_fc = any(layer.name == "fc" for layer in model.layers)
    if not has_fc or classes is None or classes == model.get_layer("fc").units:
        try:
            model.load_weights(path)
        except ValueError as error:
            raise ValueError(f"Cannot load {path} into model '{model.name}': {error}") from error
        return
    config = model.get_config()
    for layer in config["layers"]:
        if layer["config"].get("name") == "fc":
            layer["config"]["units"] = int(classes)
    source = keras.Model.from_config(config)
    source.load_weights(path)
    transfer_weights(source, model, verbose=verbose)


def _info(message, verbose):
    if verbose:
        print(message)


def build_for_record(record, **kwargs):
    """The keras_tin model a manifest record's weights belong to; see
    keras_tin.applications.records.build_for_record (imported when called)."""
    from keras_tin.applications.records import build_for_record as build

    return build(record, **kwargs)


def pretrained(name, allow_unverified=False, **kwargs):
    """Builds the model a manifest checkpoint needs and loads it; see
    keras_tin.applications.records.pretrained (imported when called)."""
    from keras_tin.applications.records import pretrained as build

    return build(name, allow_unverified=allow_unverified, **kwargs)
