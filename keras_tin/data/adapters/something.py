"""Something-Something V1 (CSV ``id;label``, JPEG frame folders) and V2 (JSON, .webm).

V1 layout (as 20BN ships it)::

    root/something-something-v1-labels.csv        one class name per line
    root/something-something-v1-{train,validation,test}.csv   ``id;label`` (test: ``id``)
    root/20bn-something-something-v1/<id>/00001.jpg ...

V2 layout::

    root/something-something-v2-labels.json        {"class name": "index", ...}
    root/something-something-v2-{train,validation,test}.json
        [{"id": "78687", "template": "Holding [something] next to [something]", ...}]
    root/20bn-something-something-v2/<id>.webm

Annotation files may also sit in ``root/annotations/`` or ``root/labels/``.
V2's class of a video is its template with the brackets removed.
"""

import json
import os

from keras_tin.data import errors as err
from keras_tin.data.adapters import base

_SPLIT_FILE = {"train": "train", "val": "validation", "test": "test"}


def read_name_list(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_id_label_csv(path, class_index, frame_dir, log, labelled=True):
    """``id;label`` lines (semicolon: class names contain commas) -> frame-folder samples."""
    samples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            video_id, _, label = line.partition(";")
            folder = os.path.join(frame_dir, video_id)
            if not labelled or not label:
                if labelled:
                    log.skip(err.DataError(f"{path}:{lineno}", err.BAD_ANNOTATION,
                                           f"no label in {line!r}"), stage="listing")
                    continue
                samples.append(base.Sample(folder, -1, "frames", video_id))
                continue
            index = base.label_index(label.strip(), class_index, folder, log)
            if index is not None:
                samples.append(base.Sample(folder, index, "frames", video_id))
    return samples


def list_v1(root, split, log, **unused):
    split = base.canonical_split(split)
    classes = read_name_list(base.find_file(root, ["something-something-v1-labels.csv"]))
    ann = base.find_file(root, [f"something-something-v1-{_SPLIT_FILE[split]}.csv"])
    frame_dir = base.find_dir(root, ["20bn-something-something-v1", "frames", "rawframes"])
    samples = read_id_label_csv(ann, {c: i for i, c in enumerate(classes)}, frame_dir, log,
                                labelled=split != "test")
    return samples, classes, False


def list_v2(root, split, log, **unused):
    split = base.canonical_split(split)
    with open(base.find_file(root, ["something-something-v2-labels.json"]), encoding="utf-8") as f:
        class_index = {name: int(i) for name, i in json.load(f).items()}
    classes = [None] * len(class_index)
    for name, i in class_index.items():
        classes[i] = name
    ann = base.find_file(root, [f"something-something-v2-{_SPLIT_FILE[split]}.json"])
    video_dir = base.find_dir(root, ["20bn-something-something-v2", "videos"])
    with open(ann, encoding="utf-8") as f:
        entries = json.load(f)
    samples = []
    for entry in entries:
        video_id = str(entry["id"])
        path = os.path.join(video_dir, f"{video_id}.webm")
        if split == "test":
            samples.append(base.Sample(path, -1, "video", video_id))
            continue
        name = entry.get("template", entry.get("label", ""))
        name = name.replace("[", "").replace("]", "")
        index = base.label_index(name, class_index, path, log)
        if index is not None:
            samples.append(base.Sample(path, index, "video", video_id))
    return samples, classes, False
