"""Kinetics-400/600: CSV annotations and class folders of trimmed clips.

Layout (the ActivityNet/DeepMind downloader's)::

    root/annotations/{train,validate,test}.csv     (or root/{split}.csv, root/kinetics400_{split}.csv)
        label,youtube_id,time_start,time_end,split[,is_cc]
    root/{train,val}/<class name>/<youtube_id>_<start:06d>_<end:06d>.mp4

Clips are matched to CSV rows by ``<youtube_id>_<start>_<end>`` (or by the bare
``youtube_id``) wherever they sit under the split folder, so class-folder
spelling (spaces or underscores) does not matter. Class indices are the sorted
class names of the training CSV, so every split shares them. The test CSV may
have no label column: labels are then -1.
"""

import csv
import os

from tqdm.auto import tqdm

from keras_tin.data import errors as err
from keras_tin.data.adapters import base


def _annotation(root, split, variant):
    names = []
    for alias in base.SPLIT_ALIASES[split]:
        names += [f"{alias}.csv", f"kinetics{variant}_{alias}.csv", f"kinetics_{variant}_{alias}.csv",
                  f"kinetics-{variant}_{alias}.csv"]
    return base.find_file(root, names, subdirs=("", "annotations", f"kinetics{variant}",
                                               f"kinetics-{variant}"))


def _read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _index_videos(folder):
    """``{stem: path}`` for every video file under ``folder``."""
    index = {}
    walker = os.walk(folder, followlinks=True)
    for dirpath, _, files in tqdm(walker, desc=f"indexing {os.path.basename(folder)}",
                                  unit="dir", leave=False, disable=None):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in base.VIDEO_EXTENSIONS:
                index[stem] = os.path.join(dirpath, name)
    return index


def list_kinetics(root, split, log, variant=400, **unused):
    split = base.canonical_split(split)
    ann = _annotation(root, split, variant)
    rows = _read_rows(ann)
    try:
        train_rows = rows if split == "train" else _read_rows(_annotation(root, "train", variant))
    except FileNotFoundError:
        train_rows = rows
    classes = sorted({r["label"] for r in train_rows if r.get("label")})
    class_index = {c: i for i, c in enumerate(classes)}
    folder = base.find_dir(root, [os.path.join(split_dir, a) for split_dir in ("", "videos")
                                  for a in base.SPLIT_ALIASES[split]])
    videos = _index_videos(folder)
    samples = []
    for lineno, row in enumerate(tqdm(rows, desc="reading annotations", unit="video",
                                      disable=len(rows) < base.PROGRESS_MIN), 2):
        try:
            yid = row["youtube_id"]
            key = f"{yid}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        except (KeyError, TypeError, ValueError):
            log.skip(err.DataError(f"{ann}:{lineno}", err.BAD_ANNOTATION, f"row {row}"),
                     stage="listing")
            continue
        path = videos.get(key) or videos.get(yid)
        if path is None:
            log.skip(err.DataError(os.path.join(folder, key + ".mp4"), err.MISSING_FILE,
                                   "no clip with this id under the split folder"), stage="listing")
            continue
        label = row.get("label")
        if not label:
            samples.append(base.Sample(path, -1, "video", key))
            continue
        index = base.label_index(label, class_index, path, log)
        if index is not None:
            samples.append(base.Sample(path, index, "video", key))
    return samples, classes, False


def list_kinetics400(root, split, log, **kwargs):
    return list_kinetics(root, split, log, variant=400)


def list_kinetics600(root, split, log, **kwargs):
    return list_kinetics(root, split, log, variant=600)
