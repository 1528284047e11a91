"""HMDB51 with its three official splits.

Layout::

    root/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
        ``<video>.avi 1``: 1 = train, 2 = test, 0 = unused in this split
    root/hmdb51/<class>/<video>.avi                (or root/<class>/<video>.avi)

``fold`` (1-3) picks the split; classes are the sorted split-file class names.
"""

import glob
import os
import re

from keras_tin.data import errors as err
from keras_tin.data.adapters import base

_SPLIT_DIRS = ("testTrainMulti_7030_splits", "splits", "annotations", "")
_FLAG = {"train": "1", "test": "2"}
_NAME = re.compile(r"^(.*)_test_split(\d)\.txt$")


def list_hmdb51(root, split, log, fold=1, **unused):
    split = base.train_test_split(split, fold, "HMDB51")
    split_files = {}
    for sub in _SPLIT_DIRS:
        for path in glob.glob(os.path.join(root, sub, f"*_test_split{fold}.txt")):
            m = _NAME.match(os.path.basename(path))
            split_files.setdefault(m.group(1), path)
        if split_files:
            break
    if not split_files:
        raise FileNotFoundError(f"no HMDB51 split files '*_test_split{fold}.txt' under {root} "
                                f"or its {_SPLIT_DIRS[:-1]} folders")
    classes = sorted(split_files)
    video_dir = base.find_dir(root, ["hmdb51", "videos", "hmdb51_org"])
    samples = []
    for index, name in enumerate(classes):
        with open(split_files[name], encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    log.skip(err.DataError(f"{split_files[name]}:{lineno}", err.BAD_ANNOTATION,
                                           f"expected '<video> <0|1|2>', got {line.strip()!r}"),
                             stage="listing")
                    continue
                if parts[1] == _FLAG[split]:
                    path = os.path.join(video_dir, name, parts[0])
                    samples.append(base.Sample(path, index, "video", parts[0]))
    return samples, classes, False
