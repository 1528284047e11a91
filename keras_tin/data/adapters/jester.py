"""20BN Jester V1: CSV ``id;label`` annotations and JPEG frame folders.

Layout::

    root/jester-v1-labels.csv                      one class name per line
    root/jester-v1-{train,validation,test}.csv     ``id;label`` (test: ``id``)
    root/20bn-jester-v1/<id>/00001.jpg ...
"""

from keras_tin.data.adapters import base
from keras_tin.data.adapters import something

_SPLIT_FILE = {"train": "train", "val": "validation", "test": "test"}


def list_jester(root, split, log, **unused):
    split = base.canonical_split(split)
    classes = something.read_name_list(base.find_file(root, ["jester-v1-labels.csv"]))
    ann = base.find_file(root, [f"jester-v1-{_SPLIT_FILE[split]}.csv"])
    frame_dir = base.find_dir(root, ["20bn-jester-v1", "frames", "rawframes"])
    samples = something.read_id_label_csv(ann, {c: i for i, c in enumerate(classes)}, frame_dir,
                                          log, labelled=split != "test")
    return samples, classes, False
