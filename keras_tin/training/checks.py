"""Errors for the common mistakes, each quoting the value and the fix."""

import os

from keras_tin.data.adapters import ADAPTERS
from keras_tin.data.adapters.base import SPLIT_ALIASES


def check_dataset(name, root):
    if name not in ADAPTERS:
        raise ValueError(f"Unknown dataset. Received: dataset={name!r}. Use one of "
                         f"{sorted(ADAPTERS)} ('folder' for root/<split>/<class>/<video>).")
    if not root:
        raise ValueError(f"No dataset root given for dataset={name!r}: pass --root /path/to/{name} "
                         f"(the layout is in keras_tin/data/adapters/).")
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Dataset root does not exist. Received: root={root!r} (dataset={name!r}). Pass "
            f"--root pointing at the folder laid out as keras_tin/data/adapters/ describes for "
            f"{name!r}, or download/extract the dataset there first.")


def check_split(split, what="split"):
    for aliases in SPLIT_ALIASES.values():
        if split in aliases:
            return split
    known = sorted({a for aliases in SPLIT_ALIASES.values() for a in aliases})
    raise ValueError(f"Unknown {what}. Received: {what}={split!r}. Use 'train', 'val' or 'test' "
                     f"(aliases: {known}).")


def model_frames(model):
    shape = model.input_shape
    return shape[1] if len(shape) == 5 else None


def check_frames(model, frames, source="the data"):
    have = model_frames(model)
    if have is not None and frames is not None and have != frames:
        raise ValueError(
            f"Frames mismatch: model '{model.name}' takes clips of {have} frames but {source} has "
            f"frames={frames}. TIN's OffsetNet is tied to the frame count it was built with: pass "
            f"--frames {have} (or rebuild/fine-tune the model with frames={frames}).")


def check_classes(model, num_classes, source="the dataset", weights=None):
    have = model.output_shape[-1]
    if num_classes is not None and have != num_classes:
        origin = f" (weights={weights!r})" if weights else ""
        raise ValueError(
            f"Class count mismatch: model '{model.name}'{origin} predicts {have} classes but "
            f"{source} has {num_classes}. Evaluate on the dataset the weights were trained on, "
            f"or fine-tune first: `keras-tin train --weights <weights> ...` drops the old "
            f"classifier and trains a new {num_classes}-class one.")


class TrainingError(RuntimeError):
    """A training run that cannot go on; the message says why and what to do."""


class TrainingDiverged(TrainingError):
    """The training loss became NaN or infinite."""


class NoUsableData(TrainingError):
    """An epoch had no training (or validation) batch: every video was skipped, or too few
    were left for one batch."""
