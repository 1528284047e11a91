"""Which frames make a clip: TSN segment sampling and dense (strided) sampling.

All functions return int64 frame indices in ``[0, num_frames)``. Clips shorter
than needed loop over their frames (index modulo the frame count), as
mmaction2's ``out_of_bound_opt="loop"`` does.
"""

import numpy as np

SAMPLINGS = ("segment", "dense")


def segment_indices(num_frames, frames, training, rng=None, num_clips=1):
    """TSN sampling: ``frames`` equal segments, one frame from each.

    Training: a random frame in each segment. Testing: the segment centre; with
    ``num_clips`` > 1, clip ``k`` takes the point ``(k + 1/2) / num_clips`` of
    each segment (TSM's multi-clip test protocol, generalised). Returns ``(num_clips, frames)`` indices
    (``(frames,)`` when ``num_clips == 1``).
    """
    _check(num_frames, frames)
    if num_frames < frames:
        start = int(rng.integers(num_frames)) if training and rng is not None else 0
        clip = (np.arange(frames) + start) % num_frames
        clips = np.stack([clip] * num_clips)
    elif training:
        rng = rng if rng is not None else np.random.default_rng()
        edges = np.linspace(0, num_frames, frames + 1)
        starts = np.floor(edges[:-1]).astype(np.int64)
        ends = np.maximum(np.floor(edges[1:]).astype(np.int64), starts + 1)
        clips = np.stack([rng.integers(starts, ends) for _ in range(num_clips)])
    else:
        tick = num_frames / frames
        # clip k starts (k + 1/2) / num_clips into each segment: the centre when num_clips == 1
        shifts = tick * (np.arange(num_clips) + 0.5) / num_clips
        clips = np.floor(shifts[:, None] + tick * np.arange(frames)[None, :])
    clips = clips.astype(np.int64) % num_frames
    return clips[0] if num_clips == 1 else clips


def dense_indices(num_frames, frames, training, rng=None, num_clips=1, stride=None):
    """A contiguous strided clip: ``frames`` frames ``stride`` apart.

    The window covers ``frames * stride`` frames (default stride ``64 // frames``,
    TSM's dense protocol). Training: a random start; testing: ``num_clips``
    starts spread evenly over the video. Returns ``(num_clips, frames)``
    (``(frames,)`` when ``num_clips == 1``).
    """
    _check(num_frames, frames)
    stride = stride or max(1, 64 // frames)
    window = frames * stride
    last_start = max(0, num_frames - window)
    if training:
        rng = rng if rng is not None else np.random.default_rng()
        starts = rng.integers(0, last_start + 1, size=num_clips)
    elif num_clips == 1:
        starts = np.array([last_start // 2])
    else:
        starts = np.linspace(0, last_start, num_clips).astype(np.int64)
    clips = (starts[:, None] + stride * np.arange(frames)[None, :]) % num_frames
    clips = clips.astype(np.int64)
    return clips[0] if num_clips == 1 else clips


def sample_indices(sampling, num_frames, frames, training, rng=None, num_clips=1, stride=None):
    """Dispatch on ``sampling`` ("segment" or "dense"); always returns ``(num_clips, frames)``."""
    if sampling == "segment":
        out = segment_indices(num_frames, frames, training, rng, num_clips)
    elif sampling == "dense":
        out = dense_indices(num_frames, frames, training, rng, num_clips, stride)
    else:
        raise ValueError(f"sampling must be one of {SAMPLINGS}. Received: sampling={sampling!r}")
    return np.asarray(out).reshape(num_clips, frames)


def _check(num_frames, frames):
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame. Received: num_frames={num_frames}")
    if frames < 1:
        raise ValueError(f"frames must be positive. Received: frames={frames}")
