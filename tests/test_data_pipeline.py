"""load_dataset end to end: shapes, determinism, bad input, multi-view averaging."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import data_videos as dv
import keras_tin.data as kd
from keras_tin.data import errors as err


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    for c, cls in enumerate(("a", "b")):
        for j in range(3):
            dv.write_video(root / cls / f"v{j}", 12 + 4 * j, "mjpeg")
    return str(root)


def _load(root, **kwargs):
    # val_fraction=0: every split reads all 6 videos of the flat folder
    args = dict(frames=4, batch_size=2, image_size=32, val_fraction=0)
    args.update(kwargs)
    return kd.load_dataset("folder", root, **args)


def _all(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_training_batches(folder):
    ds, info = _load(folder, split="train", with_info=True, seed=0)
    assert info.classes == ["a", "b"] and len(info) == 6
    assert ds.element_spec[0].shape.as_list() == [2, 4, 32, 32, 3]  # static: drop_remainder
    assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int32
    x, y = _all(ds)
    assert x.shape == (6, 4, 32, 32, 3) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 150  # RGB in [0, 255], not normalised
    assert np.all(x[..., 2] > 150)  # blue channel stays last: RGB order


def test_seeded_deterministic_runs_repeat_and_epochs_differ(folder):
    a = _all(_load(folder, split="train", seed=3, deterministic=True))
    b = _all(_load(folder, split="train", seed=3, deterministic=True))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    ds = _load(folder, split="train", seed=3, deterministic=True)
    epoch1, epoch2 = _all(ds), _all(ds)
    assert not np.array_equal(epoch1[0], epoch2[0])  # reshuffled and re-augmented
    c = _all(_load(folder, split="train", seed=4, deterministic=True))
    assert not np.array_equal(a[0], c[0])


def test_test_split_protocol_is_fixed_and_ordered(folder):
    x1, y1 = _all(_load(folder, split="test"))
    x2, y2 = _all(_load(folder, split="test"))
    np.testing.assert_array_equal(x1, x2)
    assert y1.tolist() == [0, 0, 0, 1, 1, 1]  # no shuffle, no dropped remainder


def test_frames_are_segment_centres_in_testing(tmp_path):
    root = tmp_path / "d"
    dv.write_video(root / "x" / "v", 16, "mjpeg")
    x, _ = _all(kd.load_dataset("folder", str(root), split="test", frames=4, batch_size=1,
                                image_size=32, val_fraction=0))
    assert [dv.index_of(f) for f in x[0].astype(np.uint8)] == [2, 6, 10, 14]


def test_normalization_option(folder):
    x_raw, _ = _all(_load(folder, split="test"))
    x_norm, _ = _all(_load(folder, split="test", normalization="imagenet"))
    mean = np.array([123.675, 116.28, 103.53])
    std = np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(x_norm, (x_raw - mean) / std, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="normalization='caffe'"):
        _load(folder, split="test", normalization="caffe")


def test_bad_files_are_skipped_counted_and_reported(tmp_path):
    root = tmp_path / "data"
    good = [dv.write_video(root / "a" / f"good{j}", 12, "mpeg4-avi") for j in range(3)]
    dv.write_video(root / "a" / "short", 2, "mpeg4-avi")  # shorter than T: looped, kept
    dv.truncate(dv.write_video(root / "b" / "truncated", 12, "mpeg4-mp4"), 0.5)
    (root / "b" / "noise.webm").write_bytes(np.random.default_rng(1).bytes(3000))
    import cv2

    cv2.VideoWriter(str(root / "b" / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                    (64, 48)).release()
    os.makedirs(root / "b" / "no_frames")  # a frame folder with no frame
    report = tmp_path / "report.json"
    ds, info = kd.load_dataset("folder", str(root), split="train", frames=4, batch_size=2,
                               image_size=32, report_path=str(report), with_info=True, seed=0,
                               val_fraction=0)
    x, y = _all(ds)
    assert x.shape[0] == 4 and y.tolist() == [0, 0, 0, 0]  # 4 usable: one epoch survives
    assert info.errors.counts() == {err.UNREADABLE: 2, err.ZERO_FRAMES: 2}
    data = json.loads(report.read_text())
    assert data["num_skipped"] == 4
    assert {os.path.basename(s["path"]) for s in data["skipped"]} == \
        {"truncated.mp4", "noise.webm", "empty.avi", "no_frames"}
    assert data["notes_by_kind"] == {err.LOOPED_SHORT_CLIP: 1}
    _all(ds)  # a second epoch meets the same files: counted once
    assert json.loads(report.read_text())["num_skipped"] == 4
    assert "skipped 4 samples" in info.errors.summary()


def test_fail_fast_names_the_file(tmp_path):
    root = tmp_path / "data"
    dv.write_video(root / "a" / "ok", 12, "mjpeg")
    (root / "a" / "broken.mp4").write_bytes(b"\x00" * 2000)
    ds = kd.load_dataset("folder", str(root), split="test", frames=4, batch_size=2, image_size=32,
                         on_error="raise", val_fraction=0)
    with pytest.raises(Exception, match="broken.mp4"):
        _all(ds)
    with pytest.raises(err.DataError, match="missing_file"):  # listing stage fails fast too
        (root / "list.txt").write_text("")
        root2 = tmp_path / "ucf"
        (root2 / "ucfTrainTestlist").mkdir(parents=True)
        (root2 / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\n")
        (root2 / "ucfTrainTestlist" / "trainlist01.txt").write_text("A/v_A_g01_c01.avi 1\n")
        kd.load_dataset("ucf101", str(root2), on_error="raise")


def test_multi_view_testing_and_average_views(folder):
    ds, info = _load(folder, split="test", num_clips=2, num_crops=3, batch_size=2, with_info=True)
    assert ds.views == 6 and info.views == 6
    batches = list(ds)
    x, y = batches[0]
    assert x.shape == (12, 4, 32, 32, 3) and y.numpy().tolist() == [0] * 12  # 2 videos x 6 views
    # a fake model: scores depend on the view, so only a correct per-video average is exact
    def model(clips):
        m = tf.reduce_mean(clips, axis=[1, 2, 3, 4])
        return tf.stack([m, 255.0 - m], axis=1)

    result = kd.average_views(model, ds)
    x_all, y_all = _all(ds)
    per_view = np.stack([x_all.mean(axis=(1, 2, 3, 4)), 255 - x_all.mean(axis=(1, 2, 3, 4))], 1)
    np.testing.assert_allclose(result.scores, per_view.reshape(6, 6, 2).mean(1), rtol=1e-5)
    assert result.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert 0.0 <= result.accuracy(1) <= 1.0
    with pytest.raises(ValueError, match="top-2 accuracy is meaningless with 2 classes"):
        result.accuracy(2)  # always 1.0 with 2 classes: refused
    soft = kd.average_views(model, ds, activation="softmax")
    np.testing.assert_allclose(soft.scores.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="views=5"):
        kd.average_views(model, ds, views=5)
    with pytest.warns(UserWarning, match="views"):
        per_row = kd.average_views(model, ds.map(lambda x, y: (x, y)))
    assert per_row.scores.shape == (36, 2)


def test_pyav_backend_matches_opencv(folder):
    x_cv, y_cv = _all(_load(folder, split="test"))
    x_av, y_av = _all(_load(folder, split="test", backend="pyav"))
    assert y_cv.tolist() == y_av.tolist()
    np.testing.assert_allclose(x_av, x_cv, atol=4)  # same frames; decoders round differently


def test_dense_sampling_and_cache(folder, tmp_path):
    ds = _load(folder, split="train", sampling="dense", seed=1, cache=str(tmp_path / "cache"))
    x1, _ = _all(ds)
    x2, _ = _all(ds)
    assert x1.shape == (6, 4, 32, 32, 3)
    # cached clips keep their first-epoch sampling; only the order is reshuffled
    assert sorted(map(bytes, x1.astype(np.uint8))) == sorted(map(bytes, x2.astype(np.uint8)))


def test_flip_defaults_per_dataset(tmp_path):
    root = tmp_path / "jester"
    (root).mkdir()
    (root / "jester-v1-labels.csv").write_text("Swiping Left\n")
    (root / "jester-v1-train.csv").write_text("1;Swiping Left\n")
    dv.write_frames(root / "20bn-jester-v1" / "1", 8)
    assert kd.list_samples("jester", str(root)).flip is False
    assert kd.list_samples("folder", str(tmp_path)).flip is False  # own classes: "wave left"
