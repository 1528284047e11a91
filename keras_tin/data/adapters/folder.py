"""Users' own data: one folder per class, holding videos or frame folders.

Layout::

    root/[<split>/]<class name>/<video>.mp4        (any common video extension)
    root/[<split>/]<class name>/<clip>/00001.jpg   (a folder of frames)

If ``root/<split>`` exists (train/val/test or an alias) it is used. Unless ``root``
holds folders of the other splits (then the asked-for split is missing, and using
``root`` would turn "train"/"val" into class names, so it is an error), the flat
layout ``root/<class>/`` is split in two, so that validation never scores the
training videos: per class, ``val_fraction`` of the videos (default 0.2, rounded,
at least one of a class with two or more, never all of them) are held out, and
"val" and "test" read those, "train" the rest. Which videos are held out depends
only on their file names (a fixed hash ranks each class's names), not on a seed,
the listing order or the other classes, so every run and every process agrees,
and adding a video moves at most one other across the boundary.
``val_fraction=0`` turns the split off: every split reads every video.
A log line says which of these happened. Classes are the sorted class-folder names.

Horizontal flip is off by default for this layout (flipping turns "wave left" into
"wave right"); pass ``flip=True`` when mirrored videos keep their labels.
"""

import hashlib
import logging
import os

from keras_tin.data.adapters import base

VAL_FRACTION = 0.2

logger = logging.getLogger("keras_tin.data")


def list_folder(root, split, log, val_fraction=None, **unused):
    split = base.canonical_split(split)
    val_fraction = VAL_FRACTION if val_fraction is None else float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1). Received: val_fraction={val_fraction!r}")
    folder = base.find_dir(root, base.SPLIT_ALIASES[split])
    flat = folder == root
    if flat:
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
    per_class = []
    for index, name in enumerate(classes):
        class_dir = os.path.join(folder, name)
        samples = []
        for entry in sorted(os.listdir(class_dir)):
            path = os.path.join(class_dir, entry)
            if os.path.isdir(path):
                samples.append(base.Sample(path, index, "frames", f"{name}/{entry}"))
            elif os.path.splitext(entry)[1].lower() in base.VIDEO_EXTENSIONS:
                samples.append(base.Sample(path, index, "video", f"{name}/{entry}"))
            # other files (notes, frame images at the wrong level) are not samples
        per_class.append(samples)
    if flat:
        per_class = _flat_split(root, split, per_class, classes, val_fraction)
    return [s for samples in per_class for s in samples], classes, False


def held_out(samples, val_fraction):
    """The samples of one class that "val"/"test" read in the flat layout (sorted by name).

    ``round(n * val_fraction)``, at least 1 when ``n >= 2`` and at most ``n - 1``; the
    ones whose names rank first under MD5 (a fixed, seedless hash).
    """
    n = len(samples)
    if val_fraction <= 0 or n < 2:
        return []
    k = min(max(int(round(n * val_fraction)), 1), n - 1)
    ranked = sorted(samples, key=lambda s: (hashlib.md5(os.fsencode(s.video_id)).digest(),
                                            s.video_id))
    return sorted(ranked[:k], key=lambda s: s.video_id)


def _flat_split(root, split, per_class, classes, val_fraction):
    total = sum(len(samples) for samples in per_class)
    if val_fraction <= 0:
        logger.warning("folder dataset %s has no split folders and val_fraction=0: split=%r "
                       "reads all %d videos, the same for every split (validation scores the "
                       "training videos)", root, split, total)
        return per_class
    out, num_val, unvalidated = [], 0, []
    for name, samples in zip(classes, per_class):
        val = held_out(samples, val_fraction)
        num_val += len(val)
        if not val:
            unvalidated.append(name)
        if split == "train":
            ids = {s.video_id for s in val}
            out.append([s for s in samples if s.video_id not in ids])
        else:
            out.append(val)
    used = total - num_val if split == "train" else num_val
    part = "training part" if split == "train" else "held-out part"
    logger.warning(
        "folder dataset %s has no split folders: split=%r reads the %s, %d of %d videos "
        "(per class, %.0f%% of the videos are held out for 'val'/'test' by a fixed hash of "
        "their names; the rest train; none is in both)%s. Make %s/{train,val}/<class>/ folders "
        "for a split of your own (load_dataset's val_fraction= changes the fraction).",
        root, split, part, used, total, 100 * val_fraction,
        f"; {len(unvalidated)} classes with fewer than 2 videos have none held out "
        f"({', '.join(unvalidated[:5])}{', ...' if len(unvalidated) > 5 else ''})"
        if unvalidated else "", root)
    return out
