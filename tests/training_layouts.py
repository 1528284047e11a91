"""Tiny datasets in each benchmark's on-disk layout, for the training tests.

Two classes, a few 48x48 videos (mp4v) or JPEG frame folders each, 10 frames.
"""

import csv
import json
import os

import data_videos
import numpy as np

CLASSES = ("class a", "class b")
FRAMES = 10


def _video(path):
    """An mp4v stream at ``path`` whatever its extension (OpenCV probes the content)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    written = data_videos.write_video(path + ".tmp.mp4", FRAMES, "mpeg4-mp4", 48, 48)
    os.replace(written, path)
    return path


def _frames(folder):
    return data_videos.write_frames(folder, FRAMES, 48, 48)


def folder(root, per_class=2):
    for split in ("train", "val"):
        for c in CLASSES:
            for i in range(per_class):
                _video(os.path.join(root, split, c.replace(" ", "_"), f"v{i}.mp4"))
    return root


def _something_v1_like(root, prefix, frame_dir, per_split=4):
    with open(os.path.join(root, f"{prefix}-labels.csv"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    vid = 0
    for split in ("train", "validation"):
        rows = []
        for i in range(per_split):
            vid += 1
            _frames(os.path.join(root, frame_dir, str(vid)))
            rows.append(f"{vid};{CLASSES[i % 2]}")
        with open(os.path.join(root, f"{prefix}-{split}.csv"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root


def something_v1(root):
    return _something_v1_like(root, "something-something-v1", "20bn-something-something-v1")


def jester(root):
    return _something_v1_like(root, "jester-v1", "20bn-jester-v1")


def something_v2(root, per_split=4):
    # .webm needs VP9; OpenCV reads an mp4v stream whatever the extension says
    with open(os.path.join(root, "something-something-v2-labels.json"), "w") as f:
        json.dump({c: str(i) for i, c in enumerate(CLASSES)}, f)
    vid = 0
    for split in ("train", "validation"):
        entries = []
        for i in range(per_split):
            vid += 1
            _video(os.path.join(root, "20bn-something-something-v2", f"{vid}.webm"))
            entries.append({"id": str(vid), "template": CLASSES[i % 2]})
        with open(os.path.join(root, f"something-something-v2-{split}.json"), "w") as f:
            json.dump(entries, f)
    return root


def kinetics(root, per_split=4):
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, folder_name in (("train", "train"), ("validate", "val")):
        rows = []
        for i in range(per_split):
            label, yid = CLASSES[i % 2], f"{split}{i:03d}xyzab"
            _video(os.path.join(root, folder_name, label, f"{yid}_000000_000010.mp4"))
            rows.append({"label": label, "youtube_id": yid, "time_start": 0, "time_end": 10,
                         "split": split})
        with open(os.path.join(root, "annotations", f"{split}.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, ["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def ucf101(root, per_class=2):
    lists = os.path.join(root, "ucfTrainTestlist")
    os.makedirs(lists)
    names = ("ApplyLipstick", "Archery")
    with open(os.path.join(lists, "classInd.txt"), "w") as f:
        f.write("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    train, test = [], []
    for ci, n in enumerate(names):
        for g in range(per_class * 2):
            rel = f"{n}/v_{n}_g{g + 1:02d}_c01.avi"
            _video(os.path.join(root, "UCF-101", rel))
            (train if g < per_class else test).append(rel)
    with open(os.path.join(lists, "trainlist01.txt"), "w") as f:
        f.write("".join(f"{r} {names.index(r.split('/')[0]) + 1}\n" for r in train))
    with open(os.path.join(lists, "testlist01.txt"), "w") as f:
        f.write("".join(f"{r}\n" for r in test))
    return root


def hmdb51(root, per_class=2):
    splits = os.path.join(root, "testTrainMulti_7030_splits")
    os.makedirs(splits)
    for n in ("brush_hair", "cartwheel"):
        lines = []
        for i in range(per_class * 2):
            name = f"{n}_clip{i}.avi"
            _video(os.path.join(root, "hmdb51", n, name))
            lines.append(f"{name} {1 if i < per_class else 2}")
        with open(os.path.join(splits, f"{n}_test_split1.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root


def mmit(root, per_split=4):
    names = ("running", "jumping", "talking")
    with open(os.path.join(root, "moments_categories.txt"), "w") as f:
        f.write("".join(f"{n},{i}\n" for i, n in enumerate(names)))
    for set_name, set_dir in (("trainingSet", "training"), ("validationSet", "validation")):
        rows = []
        for i in range(per_split):
            rel = f"{names[i % 3]}/clip{i}.mp4"
            _video(os.path.join(root, "videos", set_dir, rel))
            rows.append(f"{rel},{i % 3},{(i + 1) % 3}" if i % 2 else f"{rel},{i % 3}")
        with open(os.path.join(root, f"{set_name}.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root


LAYOUTS = {
    "something_v1": something_v1, "something_v2": something_v2, "jester": jester,
    "kinetics": kinetics, "ucf101": ucf101, "hmdb51": hmdb51, "mmit": mmit,
    "own_videos": folder,
}


def synthetic_direction_pair(root, num_train, num_val, pair=1, frames=8, size=32, seed=0):
    """One direction pair of keras_tin.datasets.synthetic_motion as PNG frame folders.

    root/{train,val}/<class>/<clip>/00001.png. The two classes differ only in the
    order of the frames, so top-1 accuracy here is direction accuracy (chance 0.5).
    """
    import cv2

    from keras_tin.datasets import synthetic_motion

    wanted = (2 * pair, 2 * pair + 1)
    for split, n, s in (("train", num_train, seed), ("val", num_val, seed + 1)):
        clips, labels = synthetic_motion.make_clips(n * 4, frames, size, s)  # 8 classes drawn
        keep = np.isin(labels, wanted)
        for i, (clip, label) in enumerate(zip(clips[keep], labels[keep])):
            folder = os.path.join(root, split, synthetic_motion.CLASS_NAMES[label], f"{i:05d}")
            os.makedirs(folder)
            for t, frame in enumerate(clip):
                cv2.imwrite(os.path.join(folder, f"{t + 1:05d}.png"),
                            cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return [synthetic_motion.CLASS_NAMES[c] for c in wanted]


def three_class_videos(root):
    """root/{train,val}/{a,b,c}/v<i>.mp4: 2 training videos per class; validation is
    unbalanced (3 "a", 1 "b", 1 "c"), so a model that always says "a" scores 0.6 and one
    that always says "b" 0.2. Returns root."""
    for split, counts in (("train", (2, 2, 2)), ("val", (3, 1, 1))):
        for name, n in zip("abc", counts):
            for i in range(n):
                _video(os.path.join(root, split, name, f"v{i}.mp4"))
    return root
