"""The demo dataset's defining property, measured: frames carry the pair, not the direction."""

import numpy as np
import pytest

from keras_tin.datasets import synthetic_motion


def ridge_accuracy(train_x, train_y, test_x, test_y, classes, l2=10.0):
    """A least-squares linear classifier (one-hot targets), held-out accuracy."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    a, b = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
    targets = np.eye(classes)[train_y]
    w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ targets)
    return float(np.mean((b @ w).argmax(1) == test_y))


@pytest.fixture(scope="module")
def data():
    clips, labels = synthetic_motion.make_clips(2400, frames=8, size=16, seed=3)
    return clips.astype(np.float32) / 255.0, labels


def features(clips, kind):
    n = len(clips)
    if kind == "mean_frame":  # any unordered set of frames: their average
        return clips.mean(axis=1).reshape(n, -1)
    if kind == "random_frame":
        pick = np.random.default_rng(0).integers(0, clips.shape[1], size=n)
        return clips[np.arange(n), pick].reshape(n, -1)
    if kind == "sorted_pixels":  # per-pixel values sorted over time: order removed
        return np.sort(clips, axis=1)[:, ::3].reshape(n, -1)
    return (clips[:, -1] - clips[:, 0]).reshape(n, -1)  # "last_minus_first": uses order


@pytest.mark.parametrize("kind", ["mean_frame", "random_frame", "sorted_pixels"])
def test_order_free_features_are_at_chance_on_direction(data, kind):
    clips, labels = data
    x = features(clips, kind)
    half = len(x) // 2
    direction = synthetic_motion.direction_of(labels)
    acc = ridge_accuracy(x[:half], direction[:half], x[half:], direction[half:], 2)
    assert abs(acc - 0.5) < 0.06, acc  # 1200 test clips: 3 standard errors ~ 0.043
    pair = synthetic_motion.pair_of(labels)
    pair_acc = ridge_accuracy(x[:half], pair[:half], x[half:], pair[half:], 4)
    assert pair_acc > 0.4, pair_acc  # the same features do see the motion pair (chance .25)


def test_an_order_aware_feature_sees_the_direction(data):
    clips, labels = data
    x = features(clips, "last_minus_first")
    half = len(x) // 2
    direction = synthetic_motion.direction_of(labels)
    assert ridge_accuracy(x[:half], direction[:half], x[half:], direction[half:], 2) > 0.75


def test_reversed_class_is_the_same_clip_backwards():
    clips, labels = synthetic_motion.make_clips(64, frames=6, size=16, seed=1)
    assert clips.dtype == np.uint8 and clips.shape == (64, 6, 16, 16, 3)
    assert sorted(np.bincount(labels)) == [8] * 8  # balanced
    with pytest.raises(ValueError, match="frames=1"):
        synthetic_motion.make_clips(8, frames=1)
