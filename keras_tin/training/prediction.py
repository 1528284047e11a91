"""Top-k predictions for video files (or frame folders), with label names when known."""

import os

import numpy as np
from tqdm.auto import tqdm

from keras_tin.training import checks


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def find_labels(model_path, labels=None, num_classes=None):
    """Class names: ``labels`` (a file), else ``labels.txt`` beside the model, else None."""
    candidates = [labels] if labels else []
    if model_path and not labels:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(model_path)), "labels.txt"))
    for path in candidates:
        if path and os.path.isfile(path):
            names = read_labels(path)
            if num_classes is not None and len(names) != num_classes:
                raise ValueError(f"Class count mismatch: {path} lists {len(names)} labels but the "
                                 f"model predicts {num_classes} classes. Pass --labels with the "
                                 f"label file of the dataset the model was trained on.")
            return names
        if labels:
            raise FileNotFoundError(f"labels file not found. Received: labels={labels!r}")
    return None


def predict_files(model, paths, top_k=5, class_names=None, num_clips=1, num_crops=1,
                  decoder="opencv", verbose=1):
    """``[{"path", "top": [(label, score), ...]} or {"path", "error"}]`` for each file.

    Each file is sampled with the test protocol (segment centres, short side scaled
    like 256 for 224, centre crop or 3 crops); scores are averaged over its views.
    """
    from keras_tin.data import ErrorLog
    from keras_tin.data import Sample
    from keras_tin.data.pipeline import ClipLoader
    from keras_tin.training.trainer import resize_short_for

    frames = checks.model_frames(model)
    size = model.input_shape[2]
    samples = [Sample(os.fspath(p), -1, "frames" if os.path.isdir(p) else "video") for p in paths]
    log = ErrorLog("skip")
    loader = ClipLoader(samples, frames, False, size, num_clips=num_clips, num_crops=num_crops,
                        resize_short=resize_short_for(size), backend=decoder, log=log)
    results = []
    for i in tqdm(range(len(samples)), desc="predicting", unit="video", disable=not verbose):
        path = samples[i].path
        if not os.path.exists(path):
            results.append({"path": path, "error": "no such file"})
            continue
        views, ok = loader.load(i, seed=0)
        if not ok:
            results.append({"path": path, "error": "could not decode (see warnings)"})
            continue
        probs = np.asarray(model.predict_on_batch(views.astype(np.float32))).mean(axis=0)
        order = np.argsort(-probs, kind="stable")[:top_k]
        names = class_names or [str(c) for c in range(len(probs))]
        results.append({"path": path, "top": [(names[c], float(probs[c])) for c in order]})
    return results


def format_predictions(results):
    lines = []
    for r in results:
        lines.append(r["path"])
        if "error" in r:
            lines.append(f"  error: {r['error']}")
            continue
        for label, score in r["top"]:
            lines.append(f"  {score:7.4f}  {label}")
    return "\n".join(lines)
