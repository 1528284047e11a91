"""Synthetic motion clips whose label lives only in the order of the frames.

Classes come in pairs (left/right, up/down, clockwise/anticlockwise,
approaching/receding). A clip of the second class of a pair is a clip of the
first class played backwards, generated from the same distribution. So any
single frame, and any unordered set of frames, has the same distribution under
both classes of a pair: a model that averages over frames (TSN) can tell the
pairs apart but is at chance on the direction within a pair, while a temporal
model (TIN, TSM) can learn it. This is the paper's "pulling something from left
to right vs right to left" argument, made runnable.
"""

import numpy as np

CLASS_NAMES = (
    "moving left to right", "moving right to left",
    "moving top to bottom", "moving bottom to top",
    "turning clockwise", "turning anticlockwise",
    "approaching", "receding",
)
NUM_PAIRS = len(CLASS_NAMES) // 2


def pair_of(labels):
    """The motion pair (0..3) of each label: what a frame-averaging model can see."""
    return np.asarray(labels) // 2


def direction_of(labels):
    """0 for the forward class of a pair, 1 for the reversed one."""
    return np.asarray(labels) % 2


def _draw(canvas, cy, cx, radius, color, square):
    size = canvas.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    if square:
        mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
    else:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    canvas[mask] = color


def _forward_clip(rng, pair, frames, size):
    """One clip of the first class of `pair`, (frames, size, size, 3) float."""
    background = rng.uniform(0, 90, size=3)
    clip = np.empty((frames, size, size, 3), np.float32)
    clip[:] = background
    clip += rng.normal(0, 8, size=clip.shape)
    color = rng.uniform(140, 255, size=3)
    square = bool(rng.integers(2))
    radius = rng.uniform(0.09, 0.14) * size
    margin = radius + 1
    steps = np.arange(frames) / max(frames - 1, 1)  # 0 .. 1
    if pair in (0, 1):  # translate along x (pair 0) or y (pair 1)
        span = rng.uniform(0.45, 0.7) * (size - 2 * margin)
        start = rng.uniform(margin, size - margin - span)
        along = start + span * steps
        across = np.full(frames, rng.uniform(margin, size - margin))
        ys, xs = (across, along) if pair == 0 else (along, across)
        radii = np.full(frames, radius)
    elif pair == 2:  # clockwise on screen (y points down)
        orbit = rng.uniform(0.22, 0.3) * size
        angle = rng.uniform(0, 2 * np.pi) + rng.uniform(0.9, 1.4) * np.pi * steps
        ys = size / 2 + orbit * np.sin(angle)
        xs = size / 2 + orbit * np.cos(angle)
        radii = np.full(frames, radius)
    else:  # approaching: the object grows
        lo, hi = rng.uniform(0.05, 0.08) * size, rng.uniform(0.2, 0.28) * size
        radii = lo + (hi - lo) * steps
        ys = np.full(frames, size / 2 + rng.uniform(-0.1, 0.1) * size)
        xs = np.full(frames, size / 2 + rng.uniform(-0.1, 0.1) * size)
    for t in range(frames):
        _draw(clip[t], ys[t], xs[t], radii[t], color, square)
    return clip


def make_clips(num_clips, frames=8, size=32, seed=0):
    """Balanced clips (num_clips, frames, size, size, 3) uint8 RGB and int32 labels."""
    if num_clips < 1 or frames < 2 or size < 16:
        raise ValueError(f"Need num_clips >= 1, frames >= 2, size >= 16. Received: "
                         f"num_clips={num_clips}, frames={frames}, size={size}")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_clips) % len(CLASS_NAMES)
    rng.shuffle(labels)
    clips = np.empty((num_clips, frames, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        clip = _forward_clip(rng, label // 2, frames, size)
        if label % 2:
            clip = clip[::-1]  # the reversed class: the same frames, played backwards
        clips[i] = np.clip(clip, 0, 255).astype(np.uint8)
    return clips, labels.astype(np.int32)


def load_data(num_train=1600, num_val=400, frames=8, size=32, seed=0):
    """(x_train, y_train), (x_val, y_val) of synthetic motion clips, uint8 RGB."""
    train = make_clips(num_train, frames, size, seed)
    val = make_clips(num_val, frames, size, seed + 1)
    return train, val
