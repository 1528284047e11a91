"""Class names and `decode_predictions`.

UCF101 (classInd.txt order) and HMDB51 (alphabetical, the order of the official split
files) ship with the package. Kinetics-400/600, Something-Something V1/V2 and Jester
do not: their index orders depend on the label file each codebase generated, and we
will not ship a list we cannot check. Pass that file (one name per line, or
"index name" / "name,index" lines) as `labels=`.
"""

import functools
import os

import numpy as np

LABELS_DIR = os.path.join(os.path.dirname(__file__), "labels")
PACKAGED = {"ucf101": "ucf101.txt", "hmdb51": "hmdb51.txt"}
NOT_PACKAGED = {
    "kinetics-400": "kinetics label map (e.g. mmaction2 tools/data/kinetics/label_map_k400.txt)",
    "kinetics-600": "kinetics label map (e.g. mmaction2 tools/data/kinetics/label_map_k600.txt)",
    "something-something-v1": "something-something-v1-labels.csv of the dataset",
    "something-something-v2": "something-something-v2-labels.json of the dataset",
    "jester": "jester-v1-labels.csv of the dataset",
}


def _parse_line(line):
    line = line.strip()
    if not line:
        return None
    head, _, tail = line.partition(" ")
    if head.isdigit() and tail:
        return tail.strip()  # "1 ApplyEyeMakeup" (UCF101 classInd.txt)
    name, _, index = line.rpartition(",")
    if name and index.strip().isdigit():
        return name.strip()  # "abseiling,0"
    return line


def read_label_file(path):
    """Class names from a text file: one per line, "index name", or "name,index"."""
    with open(path, encoding="utf-8") as f:
        names = [n for n in map(_parse_line, f) if n is not None]
    if not names:
        raise ValueError(f"No class names in {path}.")
    return names


@functools.lru_cache(maxsize=None)
def _packaged(dataset):
    return tuple(read_label_file(os.path.join(LABELS_DIR, PACKAGED[dataset])))


def get_labels(labels):
    """A list of class names from a dataset name, a label file path, or a sequence."""
    if isinstance(labels, (list, tuple)):
        return list(labels)
    key = str(labels).lower()
    if key in PACKAGED:
        return list(_packaged(key))
    if os.path.exists(str(labels)):
        return read_label_file(labels)
    if key in NOT_PACKAGED:
        raise ValueError(f"Class names for {labels!r} are not packaged (their order depends on "
                         f"the label file used in training); pass labels=<path to the "
                         f"{NOT_PACKAGED[key]}>.")
    raise ValueError(f"labels must be one of {sorted(PACKAGED)}, a label file or a list of "
                     f"names. Received: labels={labels!r}")


def decode_predictions(preds, labels, top=5):
    """Top-k (index, name, score) per clip, like keras.applications' decode_predictions.

    Args:
        preds: (batch, classes) scores or probabilities.
        labels: "ucf101", "hmdb51", a label file path, or a list of names.
        top: how many classes per clip.
    """
    preds = np.asarray(preds)
    names = get_labels(labels)
    if preds.ndim != 2 or preds.shape[1] != len(names):
        raise ValueError(f"preds must have shape (batch, {len(names)}) for {len(names)} classes. "
                         f"Received: preds.shape={preds.shape}")
    results = []
    for row in preds:
        order = np.argsort(-row, kind="stable")[:top]
        results.append([(int(i), names[i], float(row[i])) for i in order])
    return results
