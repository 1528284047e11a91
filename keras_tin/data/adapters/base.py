"""What every dataset adapter returns: samples, class names, and where to look for files."""

import dataclasses
import os

from tqdm.auto import tqdm

from keras_tin.data import errors as err
from keras_tin.data import files

# Long listings (Kinetics, Something-Something) get a progress bar; tiny ones stay quiet.
PROGRESS_MIN = 2000
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".mpg", ".mpeg", ".m4v", ".flv",
                    ".wmv", ".3gp", ".ogv")
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "validation", "validate", "valid"),
    "test": ("test", "testing"),
}


@dataclasses.dataclass(frozen=True)
class Sample:
    """One video: ``path`` to a video file (kind "video") or a frame folder (kind "frames").

    ``label``: a class index (-1 when the split has no labels), or a tuple of
    class indices for multi-label datasets.
    """

    path: str
    label: object
    kind: str = "video"
    video_id: str = ""


@dataclasses.dataclass
class DatasetInfo:
    """A split of a dataset: its samples and class names, and what was skipped while listing."""

    name: str
    root: str
    split: str
    classes: list
    samples: list
    multilabel: bool = False
    errors: object = None  # the ErrorLog shared with the tf.data pipeline
    flip: bool = True      # whether horizontal flip keeps labels valid
    views: int = 1         # clips x crops per video in the pipeline built from it

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return len(self.samples)


def canonical_split(split):
    for canon, aliases in SPLIT_ALIASES.items():
        if split in aliases:
            return canon
    raise ValueError(f"split must be one of {sorted(SPLIT_ALIASES)} or an alias "
                     f"({sum(SPLIT_ALIASES.values(), ())}). Received: split={split!r}")


def train_test_split(split, fold, dataset):
    """UCF101 / HMDB51: "train" or "test" for a split name and an official fold 1-3.

    These datasets have no separate validation set, so "val" reads the test list.
    """
    split = canonical_split(split)
    if fold not in (1, 2, 3):
        raise ValueError(f"{dataset} has splits 1-3. Received: fold={fold!r}")
    return "test" if split == "val" else split


def find_file(root, names, subdirs=("", "annotations", "labels", "splits")):
    """The first existing ``root/subdir/name``; FileNotFoundError naming what was tried."""
    tried = []
    for sub in subdirs:
        for name in names:
            path = os.path.join(root, sub, name)
            if os.path.isfile(path):
                return path
            tried.append(path)
    raise FileNotFoundError(f"none of these annotation files exist: {tried[:6]}"
                            + (" ..." if len(tried) > 6 else ""))


def find_dir(root, names):
    """The first existing ``root/name`` folder, else ``root``."""
    for name in names:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return path
    return root


def keep_existing(samples, log, desc="checking files"):
    """Drop (and log) samples whose file or frame folder does not exist (``missing_file``),
    or is something else: a FIFO, device or folder where a video file is expected, or a
    file where a frame folder is (``not_a_file``). Nothing is opened."""
    kept = []
    for s in tqdm(samples, desc=desc, disable=len(samples) < PROGRESS_MIN, unit="video"):
        ok = os.path.isdir(s.path) if s.kind == "frames" else os.path.isfile(s.path)
        if ok:
            kept.append(s)
        elif not os.path.exists(s.path):  # also a dangling link
            log.skip(err.DataError(s.path, err.MISSING_FILE), stage="listing")
        else:
            wanted = "a frame folder" if s.kind == "frames" else "a video file"
            log.skip(err.DataError(s.path, err.NOT_A_FILE,
                                   f"{files.describe(s.path)} where {wanted} is expected"),
                     stage="listing")
    return kept


def label_index(name, class_index, path, log):
    """``class_index[name]``, or log an unknown label and return None."""
    index = class_index.get(name)
    if index is None:
        log.skip(err.DataError(path, err.UNKNOWN_LABEL, f"label {name!r} is not a known class"),
                 stage="listing")
    return index
