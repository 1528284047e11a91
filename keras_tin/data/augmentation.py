"""Spatial augmentation, identical for every frame of a clip (TSN protocol).

Training: multi-scale crop (crop sides drawn from ``scales`` of the short side,
width and height at most ``max_distort`` scale steps apart, at one of 13 fixed
positions) resized to ``size``, then an optional horizontal flip. Testing:
resize the short side to ``resize_short`` (256) and take a centre crop (or three
crops along the long side) of ``size``.

Crops are computed in the source frame's coordinates and resized once, which
equals resize-then-crop up to interpolation and touches fewer pixels.
Frames are RGB uint8 ``(T, H, W, 3)`` throughout.
"""

import cv2
import numpy as np

TRAIN_SCALES = (1.0, 0.875, 0.75, 0.66)


def multi_scale_crop_box(height, width, size, rng, scales=TRAIN_SCALES, max_distort=1):
    """Return a crop box ``(top, left, crop_h, crop_w)`` chosen as TSN's GroupMultiScaleCrop."""
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    # a side within 3 px of the output size is snapped to it (TSN)
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides)
             if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[int(rng.integers(len(pairs)))]
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    top, left = _fixed_offset(height, width, crop_h, crop_w, rng)
    return top, left, crop_h, crop_w


def _fixed_offset(height, width, crop_h, crop_w, rng):
    # TSN's "more fix crop": corners, centre, edge midpoints and quarter points
    h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4),
            (1, 1), (1, 3), (3, 1), (3, 3)]
    r, c = grid[int(rng.integers(len(grid)))]
    return r * h_step, c * w_step


def test_crop_boxes(height, width, size, resize_short=256, num_crops=1):
    """Crop boxes of a short-side-``resize_short`` test view, in source pixels.

    ``num_crops`` 1: the centre; 3: both ends and the centre of the long side.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3. Received: num_crops={num_crops}")
    scale = min(height, width) / float(resize_short or min(height, width))
    crop_h, crop_w = min(height, round(size * scale)), min(width, round(size * scale))
    top_c, left_c = (height - crop_h) // 2, (width - crop_w) // 2
    if num_crops == 1:
        return [(top_c, left_c, crop_h, crop_w)]
    if width >= height:
        return [(top_c, left, crop_h, crop_w) for left in (0, left_c, width - crop_w)]
    return [(top, left_c, crop_h, crop_w) for top in (0, top_c, height - crop_h)]


def crop_resize(frames, box, size, flip=False):
    """Crop every frame with one ``box`` and resize to ``size x size``; flip left-right if asked."""
    top, left, crop_h, crop_w = box
    out = np.empty((len(frames), size, size, 3), np.uint8)
    interp = cv2.INTER_AREA if crop_h > 2 * size else cv2.INTER_LINEAR
    for i, frame in enumerate(frames):
        patch = frame[top:top + crop_h, left:left + crop_w]
        cv2.resize(patch, (size, size), dst=out[i], interpolation=interp)
    if flip:
        out = np.ascontiguousarray(out[:, :, ::-1])
    return out


def augment_train(frames, size, rng, flip=True, scales=TRAIN_SCALES):
    """One training view: same multi-scale crop and flip for all frames."""
    height, width = frames[0].shape[:2]
    box = multi_scale_crop_box(height, width, size, rng, scales)
    do_flip = bool(flip) and bool(rng.integers(2))
    return crop_resize(frames, box, size, do_flip)


def augment_test(frames, size, resize_short=256, num_crops=1):
    """``num_crops`` test views of a clip: ``(num_crops, T, size, size, 3)``."""
    height, width = frames[0].shape[:2]
    return np.stack([crop_resize(frames, box, size)
                     for box in test_crop_boxes(height, width, size, resize_short, num_crops)])
