"""Top-k predictions for video files (or frame folders), with label names when known."""

import os

import numpy as np
from tqdm.auto import tqdm

from keras_tin.training import checks


def read_labels(path):
    """Class names from a file: one per line (also "index name" / "name,index" lines when
    keras_tin.weights.labels is available)."""
    try:
        from keras_tin.weights.labels import read_label_file
    except ImportError:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return list(read_label_file(path))


def find_labels(model_path, labels=None, num_classes=None, pretrained=None):
    """Class names for predictions, or None (then classes are shown as indices).

    In order: ``labels`` (a file, or a packaged dataset name such as "ucf101" or
    "kinetics-400"); else ``labels.txt`` beside ``model_path`` (written by `keras-tin
    train`); else the packaged labels of the pretrained checkpoint, when its order is known.
    """
    names = None
    if labels:
        if os.path.isfile(labels):
            names = read_labels(labels)
        else:
            try:
                from keras_tin.weights.labels import get_labels
            except ImportError:
                raise FileNotFoundError(f"labels file not found. Received: labels={labels!r}")
            names = get_labels(labels)
    elif model_path:
        path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "labels.txt")
        if os.path.isfile(path):
            names = read_labels(path)
    elif pretrained:
        names = _pretrained_labels(pretrained)
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise ValueError(f"Class count mismatch: the label list has {len(names)} names but the "
                         f"model predicts {num_classes} classes. Pass --labels with the label "
                         f"file of the dataset the model was trained on.")
    return names


def _pretrained_labels(name):
    """The packaged list the record's ``labels`` names (the publisher's index order, e.g.
    "something-something-v1-sorted"), else its dataset's packaged list when every publisher
    uses the same order for it (not Something-Something V1 or Jester), else None."""
    try:
        from keras_tin.weights import registry
        from keras_tin.weights.labels import SAME_ORDER_FOR_ALL_PUBLISHERS
        from keras_tin.weights.labels import get_labels
    except ImportError:
        return None
    record = registry.get_record(name)
    if record.get("labels"):
        return get_labels(record["labels"])
    dataset = str(record.get("dataset", "")).lower()
    return get_labels(dataset) if dataset in SAME_ORDER_FOR_ALL_PUBLISHERS else None


def predict_files(model, paths, top_k=5, class_names=None, num_clips=1, num_crops=1,
                  decoder="opencv", verbose=1):
    """``[{"path", "top": [(label, score), ...]} or {"path", "error"}]`` for each file.

    Each file is sampled with the test protocol (segment centres, short side scaled
    like 256 for 224, centre crop or 3 crops); scores are averaged over its views.
    """
    from keras_tin.data import ErrorLog
    from keras_tin.data import Sample
    from keras_tin.data.files import path_problem
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
        # only regular files and frame folders are read: a FIFO would block the decoder forever
        problem = path_problem(path, folders=True)
        if problem is not None:
            results.append({"path": path, "error": problem})
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
