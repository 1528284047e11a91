"""Class names of the benchmarks with published weights, and `decode_predictions`.

The lists in ``keras_tin/weights/labels/`` hold one class name per line; line *i*
(0-based) names logit *i* of the checkpoints trained with that order. Kinetics,
Something-Something and Jester were copied byte for byte from the label maps in
open-mmlab/mmaction2 (``tools/data/*/``, commit 4d6c934; the 0.x branch has the same files)
and checked against the code that numbered the classes for training in mmaction2,
mit-han-lab/temporal-shift-module ("MIT TSM", 1f6a834), Sense-X/X-Temporal (591cbb3) and
deepcs233/TIN (801494a); the "-sorted" lists are the same names, sorted. Something-Something
V1 and Jester exist in two index orders, so the checkpoint's publisher decides which list is
right (pretrained records name theirs in the manifest's ``labels`` field). A wrong choice
still gives plausible-looking, wrong names.

=============================== ======================= ======================================
canonical name                  order                   checkpoints that use it (source)
=============================== ======================= ======================================
kinetics-400                    alphabetical            mmaction2 TSN/TSM/TIN
                                                        (tools/data/kinetics/label_map_k400.txt,
                                                        parse_file_list.py sorts the names);
                                                        MIT TSM (tools/kinetics_label_map.txt).
                                                        Same list as DeepMind kinetics-i3d and
                                                        torchvision.
kinetics-600                    alphabetical            mmaction2 (label_map_k600.txt); same as
                                                        kinetics-i3d label_map_600.txt.
                                                        X-Temporal's K600 map is unpublished
                                                        (presumably the same).
something-something-v1          official CSV line order mmaction2 SthV1 checkpoints, 0.x and
                                (not alphabetical)      v1.0 (tools/data/sthv1/label_map.txt;
                                                        flip pairs 2/4, 30/41, 52/66).
something-something-v1-sorted   sorted (Python order)   MIT TSM, TRN, TIN authors (deepcs233/TIN)
                                                        and X-Temporal: their
                                                        tools/gen_label_sthv1.py sorts the names.
                                                        Byte-identical to the V2 list.
something-something-v2          official JSON index     mmaction2 and MIT TSM alike
                                (= alphabetical)        (tools/data/sthv2/label_map.txt;
                                                        gen_label_sthv2.py keeps the JSON index).
jester                          official CSV line order mmaction2 0.x TSM Jester
                                                        (tools/data/jester/label_map.txt;
                                                        flip pairs 0/1, 6/7).
jester-sorted                   sorted                  MIT TSM (online_demo/main.py, Jester
                                                        online model).
ucf101                          classInd.txt order      mmaction2 (parse_file_list.py).
hmdb51                          alphabetical            mmaction2 (sorted class folders).
=============================== ======================= ======================================

Aliases (case-insensitive; "_" and " " count as "-"): kinetics400, k400 -> kinetics-400;
kinetics600, k600 -> kinetics-600; sthv1, ssv1, something-v1 -> something-something-v1;
sthv1-sorted, ssv1-sorted, something-v1-sorted -> something-something-v1-sorted;
sthv2, ssv2, something-v2 -> something-something-v2.

Your own label files are read by `read_label_file`: plain lists (one name per line, as in
the Something V1 / Jester label CSVs), the Something-Something V2 JSON (name -> index), a
JSON list of names, "name,index" lines (Moments in Time) and "index name" lines (UCF101
classInd.txt).
"""

import functools
import json
import os
import re

import numpy as np

LABELS_DIR = os.path.join(os.path.dirname(__file__), "labels")

# canonical name -> file in LABELS_DIR
LABEL_LISTS = {
    "kinetics-400": "kinetics400.txt",
    "kinetics-600": "kinetics600.txt",
    "something-something-v1": "something_v1.txt",
    "something-something-v1-sorted": "something_v1_sorted.txt",
    "something-something-v2": "something_v2.txt",
    "jester": "jester.txt",
    "jester-sorted": "jester_sorted.txt",
    "ucf101": "ucf101.txt",
    "hmdb51": "hmdb51.txt",
}

ALIASES = {
    "kinetics400": "kinetics-400",
    "k400": "kinetics-400",
    "kinetics600": "kinetics-600",
    "k600": "kinetics-600",
    "sthv1": "something-something-v1",
    "ssv1": "something-something-v1",
    "something-v1": "something-something-v1",
    "sthv1-sorted": "something-something-v1-sorted",
    "ssv1-sorted": "something-something-v1-sorted",
    "something-v1-sorted": "something-something-v1-sorted",
    "sthv2": "something-something-v2",
    "ssv2": "something-something-v2",
    "something-v2": "something-something-v2",
}

# Datasets whose packaged order holds for every publisher's checkpoints we know of, so a
# checkpoint's dataset name alone picks the right list. Something-Something V1 and Jester
# have two orders (see the table above); Kinetics-600 has an unpublished X-Temporal map.
SAME_ORDER_FOR_ALL_PUBLISHERS = ("kinetics-400", "something-something-v2", "ucf101", "hmdb51")

# "1 ApplyEyeMakeup" / "0,abseiling" and "abseiling,0" lines
_INDEX_FIRST = re.compile(r"(\d+)(?:\s*,\s*|\s+)(\S.*)", re.ASCII)
_INDEX_LAST = re.compile(r"(\S.*?)\s*,\s*(\d+)", re.ASCII)
_HEADER_WORDS = {"id", "index", "idx", "label", "labels", "name", "class", "class_name",
                 "label_name", "category"}


def list_labels():
    """The canonical names `get_labels` accepts (aliases not included)."""
    return list(LABEL_LISTS)


def canonical_name(name):
    """The canonical dataset name of `name` (a canonical name or an alias), else None."""
    key = re.sub(r"[\s_]+", "-", str(name).strip().lower())
    if key in LABEL_LISTS:
        return key
    return ALIASES.get(key)


def _by_index(pairs, path, what):
    """Names ordered by their integer index; the indices must be 0..n-1 or 1..n."""
    seen = {}
    for index, name in pairs:
        if index in seen:
            raise ValueError(f"{path}: index {index} is used twice in {what} "
                             f"({seen[index]!r} and {name!r}).")
        seen[index] = name
    indices = sorted(seen)
    n = len(indices)
    if not _consecutive(indices):
        base = 0 if indices[0] == 0 else 1
        missing = sorted(set(range(base, base + n)) - set(indices))
        raise ValueError(f"{path}: the indices in {what} must be 0..{n - 1} or 1..{n}, each "
                         f"once; found {n} indices from {indices[0]} to {indices[-1]}, "
                         f"missing {missing[:10]}.")
    return [seen[i] for i in indices]


def _consecutive(indices):
    n = len(indices)
    return sorted(indices) in (list(range(n)), list(range(1, n + 1)))


def _json_index(value, name, path):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{path}: the index of {name!r} must be an integer or a string of "
                         f"digits. Received: {value!r}")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+", value.strip()):
            raise ValueError(f"{path}: the index of {name!r} must be an integer or a string "
                             f"of digits. Received: {value!r}")
        value = int(value.strip())
    if value < 0:
        raise ValueError(f"{path}: the index of {name!r} is negative ({value}).")
    return value


class _JsonObject(list):
    """A JSON object as its (key, value) pairs, so repeated keys are not lost."""


def _names_from_json(data, path):
    if isinstance(data, list) and not isinstance(data, _JsonObject):
        names = []
        for i, name in enumerate(data):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{path}: a JSON list of class names must hold non-empty "
                                 f"strings; item {i} is {name!r}.")
            names.append(name.strip())
        return names
    if isinstance(data, _JsonObject):
        pairs = []
        for name, value in data:
            if not name.strip():
                raise ValueError(f"{path}: empty class name in the JSON object.")
            pairs.append((_json_index(value, name, path), name.strip()))
        names = [name for _, name in pairs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{path}: class names repeated in the JSON object: {duplicates}.")
        if not pairs:
            raise ValueError(f"No class names in {path}.")
        return _by_index(pairs, path, "the JSON object")
    raise ValueError(f"{path}: expected a JSON object (class name -> index) or a JSON list "
                     f"of class names; found {data!r:.60}.")


def _indexed(lines, path):
    """Names by index if every line has an index column holding 0..n-1 or 1..n, else None."""
    for pattern, i_index, i_name in ((_INDEX_FIRST, 1, 2), (_INDEX_LAST, 2, 1)):
        matches = [pattern.fullmatch(line) for line in lines]
        if all(matches):
            pairs = [(int(m.group(i_index)), m.group(i_name).strip()) for m in matches]
            if _consecutive([index for index, _ in pairs]):
                return _by_index(pairs, path, "the index column")
    return None


def _names_from_lines(lines, path):
    names = _indexed(lines, path)
    if names is None and len(lines) > 1 and set(
            re.split(r"[\s,]+", lines[0].lower())) <= _HEADER_WORDS:
        names = _indexed(lines[1:], path)  # an "id,name" header above "0,abseiling" rows
    return lines if names is None else names


def read_label_file(path):
    """Class names, in index order, from a label file.

    Accepted forms (UTF-8, a byte-order mark is ignored, blank lines are skipped):

    - one class name per line (the packaged lists; Something V1 / Jester label CSVs);
    - a JSON object ``{"name": "index", ...}`` (Something-Something V2
      ``something-something-v2-labels.json``; indices as strings or integers, in any
      order, each of 0..n-1 or 1..n exactly once), or a JSON list of names;
    - "name,index" lines: only when *every* line ends in ",<integer>" and the integers
      are 0..n-1 (or 1..n), each once. Otherwise the whole line is the name, so names
      with commas ("Putting something, something and something on the table") stay whole;
    - "index name" lines (UCF101 ``classInd.txt``: "1 ApplyEyeMakeup") or "index,name"
      lines, an optional "id,name" header first: only when *every* line starts with an
      integer and the integers are 0..n-1 (or 1..n). A class named "3 wheels" in a plain
      list keeps its digits.

    With an index column the names are returned ordered by index. Errors name the file.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}).") from None
    stripped = text.strip()
    if path.lower().endswith(".json") or stripped[:1] in ("{", "["):
        try:
            data = json.loads(stripped, object_pairs_hook=_JsonObject)
        except json.JSONDecodeError as e:
            if path.lower().endswith(".json"):
                raise ValueError(f"{path}: not valid JSON ({e}).") from None
            data = None  # a plain list whose first name starts with "{" or "["
        if data is not None:
            names = _names_from_json(data, path)
            if not names:
                raise ValueError(f"No class names in {path}.")
            return names
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if not lines:
        raise ValueError(f"No class names in {path}.")
    return _names_from_lines(lines, path)


@functools.lru_cache(maxsize=None)
def _packaged(name):
    return tuple(read_label_file(os.path.join(LABELS_DIR, LABEL_LISTS[name])))


def get_labels(labels):
    """Class names from a dataset name, a label file, or a list of names.

    Args:
        labels: a canonical dataset name (see `list_labels()`: "kinetics-400",
            "kinetics-600", "something-something-v1" (CSV order, mmaction2),
            "something-something-v1-sorted" (MIT TSM / TIN authors / X-Temporal),
            "something-something-v2", "jester" (CSV order, mmaction2), "jester-sorted"
            (MIT TSM), "ucf101", "hmdb51") or an alias ("k400", "sthv1", "ssv2", ...:
            `ALIASES`); a path to a label file (see `read_label_file`); or a list/tuple of
            names.

    Returns:
        A new list of class names; item i names logit i.
    """
    if isinstance(labels, (list, tuple)):
        return list(labels)
    if isinstance(labels, (str, os.PathLike)):
        name = canonical_name(labels) if isinstance(labels, str) else None
        if name is not None:
            return list(_packaged(name))
        if os.path.isfile(labels):
            return read_label_file(labels)
    raise ValueError(f"labels must be a dataset name ({', '.join(LABEL_LISTS)}; aliases: "
                     f"{', '.join(ALIASES)}), an existing label file or a list of names. "
                     f"Received: labels={labels!r}")


def decode_predictions(preds, labels, top=5):
    """Top-k (index, name, score) per clip, like keras.applications' decode_predictions.

    Args:
        preds: (batch, classes) scores or probabilities.
        labels: a packaged list: "kinetics-400", "kinetics-600", "something-something-v1"
            (CSV order: mmaction2 checkpoints), "something-something-v1-sorted" (MIT TSM,
            TIN authors, X-Temporal checkpoints), "something-something-v2", "jester" (CSV
            order: mmaction2), "jester-sorted" (MIT TSM), "ucf101", "hmdb51", or an alias
            such as "k400" / "sthv1" / "ssv2"; or a label file path; or a list of names.
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
