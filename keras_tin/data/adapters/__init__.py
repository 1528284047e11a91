"""Dataset adapters: each reads one benchmark's annotation layout into `Sample`s."""

import os

from keras_tin.data import errors as err
from keras_tin.data.adapters import base
from keras_tin.data.adapters.base import DatasetInfo
from keras_tin.data.adapters.base import Sample
from keras_tin.data.adapters.folder import list_folder
from keras_tin.data.adapters.hmdb51 import list_hmdb51
from keras_tin.data.adapters.jester import list_jester
from keras_tin.data.adapters.kinetics import list_kinetics400
from keras_tin.data.adapters.kinetics import list_kinetics600
from keras_tin.data.adapters.mmit import list_mmit
from keras_tin.data.adapters.something import list_v1
from keras_tin.data.adapters.something import list_v2
from keras_tin.data.adapters.ucf101 import list_ucf101

ADAPTERS = {
    "something-v1": list_v1,
    "something-v2": list_v2,
    "jester": list_jester,
    "kinetics400": list_kinetics400,
    "kinetics600": list_kinetics600,
    "ucf101": list_ucf101,
    "hmdb51": list_hmdb51,
    "mmit": list_mmit,
    "folder": list_folder,
}
# flipping left-right changes the label (e.g. "pushing something from left to right"); users'
# own classes may too ("wave left"), so the folder layout does not flip unless asked to
NO_FLIP = ("something-v1", "something-v2", "jester", "folder")


def list_samples(name, root, split="train", fold=1, on_error="skip", report_path=None,
                 errors=None, check_files=True, val_fraction=None):
    """Read a dataset's annotations into a `DatasetInfo` (samples, class names, skipped).

    Args:
      name: one of ``ADAPTERS`` ("something-v1", "something-v2", "jester",
        "kinetics400", "kinetics600", "ucf101", "hmdb51", "mmit", "folder").
      root: the dataset folder, laid out as the adapter's docstring shows.
      split: "train", "val" (or "validation") or "test".
      fold: UCF101 / HMDB51 split number (1-3).
      on_error: "skip" (drop and count bad samples) or "raise" (fail on the first).
      report_path: optional JSON file that lists what was skipped and why.
      errors: an existing `ErrorLog` to record into (overrides the two above).
      check_files: drop samples whose file or frame folder does not exist, or is not
        a regular file / folder (a FIFO, a device); without it, decoding skips those.
      val_fraction: "folder" only, flat ``root/<class>/`` layout (no split folders): the
        fraction of each class held out for "val"/"test" (default 0.2; 0 = no split, every
        split reads every video). See ``keras_tin/data/adapters/folder.py``.

    ``info.flip`` (the pipeline's default for ``flip``) is False for Something-Something,
    Jester and "folder" (left/right can be the label), True for the other benchmarks.
    """
    if name not in ADAPTERS:
        raise ValueError(f"name must be one of {sorted(ADAPTERS)}. Received: name={name!r}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root!r} is not a folder")
    log = errors if errors is not None else err.ErrorLog(on_error, report_path)
    extra = {} if val_fraction is None else {"val_fraction": val_fraction}
    if extra and name != "folder":
        raise ValueError(f"val_fraction applies to name='folder' only. Received: name={name!r}")
    samples, classes, multilabel = ADAPTERS[name](root, split, log, fold=fold, **extra)
    if check_files:
        samples = base.keep_existing(samples, log)
    return DatasetInfo(name=name, root=root, split=split, classes=list(classes), samples=samples,
                       multilabel=multilabel, errors=log, flip=name not in NO_FLIP)
