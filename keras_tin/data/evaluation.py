"""Multi-view testing: average class scores over each video's views.

A test dataset built with ``num_clips=N, num_crops=C`` yields batches whose
rows are views, V = N * C adjacent rows per video. `average_views` runs the
model, turns outputs into probabilities if asked, averages the V rows of
each video and returns per-video scores with their labels.
"""

import dataclasses
import warnings

import numpy as np

from keras_tin.data import errors as err


def topk_accuracy(scores, labels, k):
    """Top-k accuracy of (N, K) scores against (N,) labels. k must be below the class count
    (k >= K counts every video as correct), so top-5 is for more than 5 classes."""
    if k >= scores.shape[1] and k > 1:
        raise ValueError(f"top-{k} accuracy is meaningless with {scores.shape[1]} classes "
                         f"(always 1.0).")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def mean_average_precision(scores, multi_hot):
    """Mean over classes with a positive of average precision (ties broken stably)."""
    aps = []
    for c in range(scores.shape[1]):
        positive = multi_hot[:, c] > 0
        if not positive.any():
            continue
        hits = positive[np.argsort(-scores[:, c], kind="stable")]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float(np.sum(precision * hits) / hits.sum()))
    return float(np.mean(aps)) if aps else float("nan")


@dataclasses.dataclass
class ViewScores:
    """Per-video averaged scores ``(N, K)`` and labels (``(N,)`` int or ``(N, K)`` multi-hot)."""

    scores: np.ndarray
    labels: np.ndarray

    def accuracy(self, k=1):
        """Top-k accuracy over videos (single-label datasets; k below the class count)."""
        if self.labels.ndim != 1:
            raise ValueError("top-k accuracy needs single-label labels; use mean_average_precision()")
        return topk_accuracy(self.scores, self.labels, k)

    def mean_average_precision(self):
        """Mean over classes of average precision (multi-label datasets, e.g. Multi-Moments)."""
        return mean_average_precision(self.scores, self.labels)


def _activate(x, activation):
    if activation is None:
        return x
    if activation == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    raise ValueError(f"activation must be None, 'softmax' or 'sigmoid'. Received: {activation!r}")


def average_views(model, dataset, views=None, activation=None, steps=None):
    """Average scores over each video's views.

    Args:
      model: a callable on a batch of clips (a Keras model; `predict_on_batch` is used
        when it has one).
      dataset: yields ``(clips, labels)`` with each video's ``views`` rows adjacent,
        as `keras_tin.data.load_dataset(..., num_clips=N, num_crops=C)` builds it.
      views: rows per video; default the dataset's ``views`` attribute (set by
        `load_dataset`; dataset transformations drop it, then pass it).
      activation: applied to each view's output before averaging: None when the
        model already ends in softmax/sigmoid (keras_tin's default heads), "softmax"
        for logits, "sigmoid" for multi-label logits.
      steps: stop after this many batches.

    Returns:
      `ViewScores` with ``scores (videos, K)`` and ``labels``.

    Raises:
      DataError: a dataset built with ``on_error="raise"`` met a bad file (not the
        TensorFlow error that carried it out of the pipeline).
    """
    if views is None:
        views = getattr(dataset, "views", None)
        if views is None:  # lost by a transformation such as .take(): say what we assume
            warnings.warn("the dataset has no `views` attribute (set by load_dataset); assuming "
                          "1 view per video. Pass views=num_clips*num_crops.", stacklevel=2)
            views = 1
    views = int(views)
    predict = getattr(model, "predict_on_batch", model)
    scores, labels = [], []
    with err.raising_data_errors():
        for step, (clips, y) in enumerate(dataset):
            if steps is not None and step >= steps:
                break
            out = _activate(np.asarray(predict(clips), np.float64), activation)
            if out.shape[0] % views:
                raise ValueError(f"a batch of {out.shape[0]} rows does not hold whole videos of "
                                 f"{views} views. Received: views={views}")
            scores.append(out.reshape(-1, views, out.shape[-1]).mean(axis=1))
            y = np.asarray(y)
            labels.append(y[::views])
    if not scores:
        raise ValueError("the dataset yielded no batch")
    return ViewScores(np.concatenate(scores), np.concatenate(labels))
