"""UCF101 with its three official train/test splits.

Layout (as the archives unpack)::

    root/ucfTrainTestlist/classInd.txt             ``1 ApplyEyeMakeup`` (1-based)
    root/ucfTrainTestlist/trainlist0{1,2,3}.txt    ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``
    root/ucfTrainTestlist/testlist0{1,2,3}.txt     ``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi``
    root/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi

``fold`` (1-3) picks the split. Test labels come from the class folder name.
"""

import os

from keras_tin.data import errors as err
from keras_tin.data.adapters import base

_SUBDIRS = ("", "ucfTrainTestlist", "annotations", "splits")


def list_ucf101(root, split, log, fold=1, **unused):
    split = base.train_test_split(split, fold, "UCF101")
    classes = []
    with open(base.find_file(root, ["classInd.txt"], _SUBDIRS), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                number, name = line.split()
                classes.append((int(number), name))
    classes = [name for _, name in sorted(classes)]
    class_index = {c.lower(): i for i, c in enumerate(classes)}
    ann = base.find_file(root, [f"{split}list0{fold}.txt"], _SUBDIRS)
    video_dir = base.find_dir(root, ["UCF-101", "UCF101", "videos"])
    samples = []
    with open(ann, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0].replace("\\", "/")
            path = os.path.join(video_dir, rel)
            if "/" not in rel:
                log.skip(err.DataError(f"{ann}:{lineno}", err.BAD_ANNOTATION,
                                       f"expected class/video, got {rel!r}"), stage="listing")
                continue
            index = base.label_index(rel.split("/")[0].lower(), class_index, path, log)
            if index is not None:
                samples.append(base.Sample(path, index, "video", rel))
    return samples, classes, False
