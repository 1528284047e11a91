"""TSN segment sampling, dense sampling and short-clip looping."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_tin.data import sampling


@settings(max_examples=60, deadline=None)
@given(n=st.integers(8, 400), t=st.integers(1, 16), seed=st.integers(0, 2**31))
def test_training_takes_one_frame_inside_each_segment(n, t, seed):
    if n < t:
        return
    idx = sampling.segment_indices(n, t, training=True, rng=np.random.default_rng(seed))
    assert idx.shape == (t,)
    for k, i in enumerate(idx):
        lo, hi = int(np.floor(k * n / t)), int(np.floor((k + 1) * n / t))
        assert lo <= i < max(hi, lo + 1)


def test_training_is_random_and_seeded():
    draws = {tuple(sampling.segment_indices(300, 8, True, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 15
    a = sampling.segment_indices(300, 8, True, np.random.default_rng(7))
    b = sampling.segment_indices(300, 8, True, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_testing_takes_segment_centres():
    np.testing.assert_array_equal(sampling.segment_indices(80, 8, training=False),
                                  [5, 15, 25, 35, 45, 55, 65, 75])
    np.testing.assert_array_equal(sampling.segment_indices(16, 4, training=False), [2, 6, 10, 14])


def test_multi_clip_testing_spreads_clips_within_segments():
    clips = sampling.segment_indices(80, 8, training=False, num_clips=2)
    assert clips.shape == (2, 8)
    np.testing.assert_array_equal(clips[0], np.arange(8) * 10 + 2)  # 1/4 into each segment
    np.testing.assert_array_equal(clips[1], np.arange(8) * 10 + 7)  # 3/4 into each segment


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", ["segment", "dense"])
def test_short_clips_loop(training, mode):
    idx = sampling.sample_indices(mode, 3, 8, training, np.random.default_rng(0))
    assert idx.shape == (1, 8) and idx.min() >= 0 and idx.max() <= 2
    assert set(idx[0].tolist()) == {0, 1, 2}  # every real frame is used, then repeated
    if mode == "segment":
        d = np.diff(idx[0]) % 3
        assert np.all(d == 1)  # loops in order: 0 1 2 0 1 2 ...


def test_dense_sampling_is_a_strided_window():
    idx = sampling.dense_indices(200, 8, training=True, rng=np.random.default_rng(3))
    assert np.all(np.diff(idx) == 8)  # stride 64 // 8
    idx = sampling.dense_indices(200, 8, training=False, stride=2)
    np.testing.assert_array_equal(idx, 92 + 2 * np.arange(8))  # centred window
    clips = sampling.dense_indices(200, 8, training=False, num_clips=3)
    np.testing.assert_array_equal(clips[:, 0], [0, 68, 136])  # starts spread over the video
    assert clips.max() < 200


def test_bad_arguments():
    with pytest.raises(ValueError, match="sampling="):
        sampling.sample_indices("random", 10, 8, True)
    with pytest.raises(ValueError, match="num_frames=0"):
        sampling.segment_indices(0, 8, True)
