"""Multi-scale crop, flip and test crops: one geometry for every frame of a clip."""

import numpy as np
import pytest

from keras_tin.data import augmentation


def _clip(t=4, h=240, w=320):
    # every frame carries the same horizontal ramp plus its own index in channel 1
    x = np.zeros((t, h, w, 3), np.uint8)
    x[..., 0] = (np.arange(w) * 255 // (w - 1))[None, None, :]
    x[..., 1] = (np.arange(t) * 40)[:, None, None]
    return list(x)


def test_multi_scale_crop_sides_come_from_the_scales():
    rng = np.random.default_rng(0)
    allowed = {int(240 * s) for s in augmentation.TRAIN_SCALES} | {224}
    boxes = [augmentation.multi_scale_crop_box(240, 320, 224, rng) for _ in range(300)]
    for top, left, ch, cw in boxes:
        assert ch in allowed and cw in allowed
        assert 0 <= top <= 240 - ch and 0 <= left <= 320 - cw
    sides = [240, 210, 180, 158]
    expected = {(a, b) for i, a in enumerate(sides) for j, b in enumerate(sides) if abs(i - j) <= 1}
    assert {(ch, cw) for _, _, ch, cw in boxes} == expected  # never two scale steps apart
    snapped = {augmentation.multi_scale_crop_box(258, 320, 224, rng)[2] for _ in range(200)}
    assert 224 in snapped and 225 not in snapped  # int(258 * .875) = 225 snaps to the output 224


def test_training_crop_and_flip_are_shared_by_all_frames():
    seen_flip = set()
    for seed in range(12):
        out = augmentation.augment_train(_clip(), 64, np.random.default_rng(seed), flip=True)
        assert out.shape == (4, 64, 64, 3) and out.dtype == np.uint8
        ramp = out[..., 0].astype(int)
        for t in range(1, 4):
            np.testing.assert_array_equal(ramp[t], ramp[0])  # same box and flip
            assert abs(out[t, ..., 1].mean() - 40 * t) < 1  # frame order kept
        increasing = ramp[0, 32, -1] > ramp[0, 32, 0]
        seen_flip.add(bool(increasing))
    assert seen_flip == {True, False}


def test_flip_can_be_disabled():
    for seed in range(12):
        out = augmentation.augment_train(_clip(), 64, np.random.default_rng(seed), flip=False)
        assert out[0, 32, -1, 0] > out[0, 32, 0, 0]


def test_test_crops_follow_short_side_256():
    boxes = augmentation.test_crop_boxes(240, 320, 224, resize_short=256, num_crops=1)
    assert boxes == [(15, 55, 210, 210)]  # 224 of 256 on a 240 short side = 210 px, centred
    three = augmentation.test_crop_boxes(240, 320, 224, 256, num_crops=3)
    assert [b[1] for b in three] == [0, 55, 110] and all(b[0] == 15 for b in three)
    tall = augmentation.test_crop_boxes(320, 240, 224, 256, num_crops=3)
    assert [b[0] for b in tall] == [0, 55, 110]
    views = augmentation.augment_test(_clip(), 32, 256, 3)
    assert views.shape == (3, 4, 32, 32, 3)
    assert views[0, 0, 16, :, 0].mean() < views[1, 0, 16, :, 0].mean() < views[2, 0, 16, :, 0].mean()
    with pytest.raises(ValueError, match="num_crops=2"):
        augmentation.test_crop_boxes(240, 320, 224, num_crops=2)
