"""Users' own data: one folder per class, holding videos or frame folders.

Layout::

    root/[<split>/]<class name>/<video>.mp4        (any common video extension)
    root/[<split>/]<class name>/<clip>/00001.jpg   (a folder of frames)

If ``root/<split>`` exists (train/val/test or an alias) it is used, else ``root``
itself, unless ``root`` holds folders of the other splits: then the asked-for split is
missing, and using ``root`` would turn "train"/"val" into class names, so it is an error.
Classes are the sorted class-folder names.
"""

import os

from keras_tin.data.adapters import base


def list_folder(root, split, log, **unused):
    split = base.canonical_split(split)
    folder = base.find_dir(root, base.SPLIT_ALIASES[split])
    if folder == root:
        present = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                         and any(d in aliases for aliases in base.SPLIT_ALIASES.values()))
        if present:
            raise FileNotFoundError(
                f"folder dataset {root!r} has split folders {present} but none for "
                f"split={split!r} (looked for {list(base.SPLIT_ALIASES[split])}). Create "
                f"{os.path.join(root, split)}/<class>/<video>, or ask for one of {present}.")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not classes:
        raise FileNotFoundError(f"no class folders under {folder}")
    samples = []
    for index, name in enumerate(classes):
        class_dir = os.path.join(folder, name)
        for entry in sorted(os.listdir(class_dir)):
            path = os.path.join(class_dir, entry)
            if os.path.isdir(path):
                samples.append(base.Sample(path, index, "frames", f"{name}/{entry}"))
            elif os.path.splitext(entry)[1].lower() in base.VIDEO_EXTENSIONS:
                samples.append(base.Sample(path, index, "video", f"{name}/{entry}"))
            # other files (notes, frame images at the wrong level) are not samples
    return samples, classes, False
