"""Evaluation protocols: 1 clip x centre crop, or N clips x 3 crops, averaged per video.

Each video's views (N temporal clips x 1 or 3 spatial crops) go through the
model; the per-view class probabilities (softmax, or sigmoid for multi-label)
are averaged per video, then scored: top-1/top-5 accuracy and mean class
accuracy, or mean average precision (mAP) for multi-label datasets. The data
pipeline runs with fixed seeds and deterministic order, so the same model and
data give the same numbers every time.
"""

import json
import math
import os

import numpy as np
from tqdm.auto import tqdm

from keras_tin.data.evaluation import mean_average_precision
from keras_tin.data.evaluation import topk_accuracy
from keras_tin.training import checks


def mean_class_accuracy(scores, labels, num_classes):
    """Mean over the classes present of per-class recall (UCF101/HMDB51's usual extra number)."""
    predicted = np.argmax(scores, axis=1)
    recalls = [np.mean(predicted[labels == c] == c) for c in range(num_classes)
               if np.any(labels == c)]
    return float(np.mean(recalls))


def confusion_matrix(scores, labels, num_classes):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, np.argmax(scores, axis=1)), 1)
    return matrix


def plot_confusion(matrix, classes, path, title="Confusion matrix"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    side = min(4 + 0.25 * n, 40)
    fig, ax = plt.subplots(figsize=(side, side))
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)  # recall per true class
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:  # the counts, readable up to ~30 classes
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if rows[i, j] > 0.5 else "black")
    if n <= 60:
        ax.set_xticks(range(n), [str(c) for c in classes], rotation=90, fontsize=7)
        ax.set_yticks(range(n), [str(c) for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _views(model, dataset, num_videos, batch_size, views, desc, verbose):
    """Yields ``(clips, labels)`` batches while a bar counts videos."""
    bar = tqdm(total=num_videos, desc=desc, unit="video", disable=not verbose)
    for clips, labels in dataset:
        yield clips, labels
        bar.update(int(clips.shape[0]) // views)
    if bar.n < num_videos:  # skipped videos (see the skip report) still count as done
        bar.set_postfix_str(f"{num_videos - bar.n} skipped")
        bar.update(num_videos - bar.n)
    bar.close()


def evaluate_model(model, dataset, root, split="val", num_clips=1, num_crops=1, batch_size=8,
                   image_size=None, fold=1, decoder="opencv", classes=None, output_dir=None,
                   steps=None, verbose=1):
    """Scores ``model`` on a dataset split with the multi-view protocol.

    Args:
      model: a Keras model ending in softmax (or sigmoid for multi-label datasets).
      dataset, root, split, fold, decoder: as for `keras_tin.data.load_dataset`.
      num_clips, num_crops: views per video; (1, 1) is the paper's single centre crop,
        (N, 3) the "N clips x 3 crops" protocol.
      batch_size: videos per batch (each brings num_clips * num_crops views).
      image_size: crop side; default the model's input size.
      classes: class names for the confusion matrix; default the dataset's.
      output_dir: where metrics.json, scores.npz and confusion_matrix.png go (None: nowhere).
      steps: stop after this many batches.

    Returns:
      A dict of metrics (``top1``, ``top5``, ``mean_class_accuracy`` or ``mAP``,
      ``videos``, ``views``) plus ``scores`` and ``labels`` arrays per video.
    """
    from keras_tin.data import average_views
    from keras_tin.data import load_dataset
    from keras_tin.training.trainer import resize_short_for

    checks.check_dataset(dataset, root)
    checks.check_split(split)
    frames = checks.model_frames(model)
    image_size = image_size or model.input_shape[2]
    ds, info = load_dataset(dataset, root, split=split, frames=frames, training=False,
                            batch_size=batch_size, image_size=image_size, num_clips=num_clips,
                            num_crops=num_crops, shuffle=False, deterministic=True, seed=0,
                            fold=fold, backend=decoder, resize_short=resize_short_for(image_size),
                            with_info=True)
    checks.check_frames(model, frames)
    checks.check_classes(model, info.num_classes, f"{dataset} ({info.num_classes} classes)")
    views = num_clips * num_crops
    num_videos = len(info.samples)
    if steps is not None:
        num_videos = min(num_videos, steps * batch_size)
    batches = _views(model, ds, num_videos, batch_size, views,
                     f"evaluating {dataset} {split} ({num_clips} clip x {num_crops} crop)",
                     verbose)
    # the model's own softmax/sigmoid gives per-view probabilities; average_views means them
    result = average_views(model, batches, views=views, steps=steps)
    scores, labels = result.scores, result.labels
    metrics = {"dataset": dataset, "split": split, "videos": int(len(scores)), "views": views,
               "num_clips": num_clips, "num_crops": num_crops}
    if info.multilabel:
        metrics["mAP"] = mean_average_precision(scores, labels)
    else:
        labels = labels.astype(np.int64)
        metrics["top1"] = topk_accuracy(scores, labels, 1)
        if info.num_classes > 5:  # with 5 or fewer classes top-5 is always 1.0
            metrics["top5"] = topk_accuracy(scores, labels, 5)
        metrics["mean_class_accuracy"] = mean_class_accuracy(scores, labels, info.num_classes)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
        np.savez(os.path.join(output_dir, "scores.npz"), scores=scores, labels=labels,
                 video_ids=np.array([s.video_id for s in info.samples[:len(scores)]]))
        if not info.multilabel:
            metrics["confusion_matrix"] = plot_confusion(
                confusion_matrix(scores, labels, info.num_classes), classes or info.classes,
                os.path.join(output_dir, "confusion_matrix.png"),
                f"{dataset} {split}: top-1 {metrics['top1']:.3f}")
    metrics["scores"], metrics["labels"] = scores, labels
    return metrics


def format_metrics(metrics):
    keys = [k for k in ("top1", "top5", "mean_class_accuracy", "mAP") if k in metrics]
    parts = [f"{k} {metrics[k]:.4f}" for k in keys if not math.isnan(metrics[k])]
    return (f"{metrics['dataset']} {metrics['split']}: {metrics['videos']} videos x "
            f"{metrics['views']} views: " + ", ".join(parts))
