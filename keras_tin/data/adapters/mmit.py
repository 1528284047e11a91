"""Multi-Moments in Time: multi-label CSV annotations (labels become multi-hot vectors).

Layout (as released)::

    root/moments_categories.txt          ``class_name,index`` per line
    root/trainingSet.{txt,csv}           ``relative/path.mp4,index[,index...]``
    root/validationSet.{txt,csv}
    root/videos/<relative path>          (or root/videos/{training,validation}/..., root/...)

Labels may be class indices or class names.
"""

import csv
import os

from tqdm.auto import tqdm

from keras_tin.data import errors as err
from keras_tin.data.adapters import base

_SET = {"train": ("trainingSet", "training"), "val": ("validationSet", "validation")}


def list_mmit(root, split, log, **unused):
    split = base.canonical_split(split)
    if split == "test":
        raise ValueError("Multi-Moments in Time has no labelled test split: use split='val'.")
    with open(base.find_file(root, ["moments_categories.txt", "multi_moments_categories.txt",
                                    "categories.txt"]), newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r]
    if all(len(r) >= 2 for r in rows):
        classes = [None] * len(rows)
        for name, idx in ((r[0], int(r[1])) for r in rows):
            classes[idx] = name
    else:
        classes = [r[0] for r in rows]
    by_name = {c: i for i, c in enumerate(classes)}
    set_name, set_dir = _SET[split]
    ann = base.find_file(root, [f"{set_name}.txt", f"{set_name}.csv"])
    video_dirs = [os.path.join(root, "videos"), os.path.join(root, "videos", set_dir),
                  os.path.join(root, set_dir), root]
    with open(ann, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r]
    samples = []
    for lineno, row in enumerate(tqdm(rows, desc="reading annotations", unit="video",
                                      disable=len(rows) < base.PROGRESS_MIN), 1):
        rel = row[0].strip()
        path = next((os.path.join(d, rel) for d in video_dirs
                     if os.path.isfile(os.path.join(d, rel))), os.path.join(video_dirs[0], rel))
        labels, bad = [], None
        for token in (t.strip() for t in row[1:] if t.strip()):
            index = int(token) if token.isdigit() else by_name.get(token)
            if index is None or not 0 <= index < len(classes):
                bad = token
                break
            labels.append(index)
        if bad is not None or not labels:
            log.skip(err.DataError(path, err.UNKNOWN_LABEL, f"label {bad!r} on line {lineno}"
                                   if bad is not None else f"no label on line {lineno}"),
                     stage="listing")
            continue
        samples.append(base.Sample(path, tuple(sorted(set(labels))), "video", rel))
    return samples, classes, True
