"""Decoding real encoded files: codecs, seeking, frame folders, and broken input."""

import os

import cv2
import numpy as np
import pytest

import data_videos as dv
from keras_tin.data import decoding
from keras_tin.data import errors as err
from keras_tin.data import frame_folders

BACKENDS = ["opencv", "pyav"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", sorted(dv.CODECS))
def test_codecs_decode_the_frames_asked_for_in_rgb(tmp_path, codec, backend):
    path = dv.write_video(tmp_path / "clip", 24, codec)
    wanted = np.array([5, 0, 23, 5, 11])  # unsorted with a repeat, as looping produces
    frames, count = decoding.read_frames(path, "video", lambda n: wanted, backend=backend)
    assert count == 24
    assert [dv.index_of(f) for f in frames] == wanted.tolist()
    f = frames[0]
    assert f.dtype == np.uint8 and f.shape == (dv.HEIGHT, dv.WIDTH, 3)
    assert f[..., 2].mean() > 190 and f[..., 1].mean() < 70  # RGB, not BGR


def test_seeking_gives_the_same_frames_as_grabbing(tmp_path, monkeypatch):
    path = dv.write_video(tmp_path / "long", 90, "mpeg4-avi")
    wanted = np.array([2, 40, 41, 77, 89])
    grabbed, _ = decoding.read_frames(path, "video", lambda n: wanted, seek=False)
    monkeypatch.setattr(decoding._OpenCV, "SEEK_GAP", 4)  # force seeks on every gap
    seeked, _ = decoding.read_frames(path, "video", lambda n: wanted, seek=True)
    assert [dv.index_of(f) for f in seeked] == [dv.index_of(f) for f in grabbed]
    assert [dv.index_of(f) % 30 for f in seeked] == (wanted % 30).tolist()
    for a, b in zip(seeked, grabbed):
        np.testing.assert_allclose(a.astype(int), b.astype(int), atol=3)


def test_choose_sees_the_frame_count(tmp_path):
    path = dv.write_video(tmp_path / "clip", 17, "mjpeg")
    seen = []
    decoding.read_frames(path, "video", lambda n: seen.append(n) or np.array([n - 1]))
    assert seen == [17]
    assert decoding.count_frames(path) == 17
    assert decoding.count_frames(path, exact=True) == 17


def test_frame_folder_reads_only_requested_images(tmp_path, monkeypatch):
    folder = dv.write_frames(tmp_path / "clip", 12)
    opened = []
    real_imread = cv2.imread
    monkeypatch.setattr(frame_folders.cv2, "imread",
                        lambda p, *a: opened.append(os.path.basename(p)) or real_imread(p, *a))
    frames, count = decoding.read_frames(folder, "frames", lambda n: np.array([0, 6, 6, 11]))
    assert count == 12
    assert [dv.index_of(f) for f in frames] == [0, 6, 6, 11]
    assert sorted(opened) == ["00001.jpg", "00007.jpg", "00012.jpg"]
    assert frames[0][..., 2].mean() > 190  # RGB


def test_frame_folder_with_unnumbered_names_sorts_them(tmp_path):
    folder = tmp_path / "clip"
    dv.write_frames(folder, 3)
    for i, name in enumerate(["00001.jpg", "00002.jpg", "00003.jpg"]):
        os.rename(folder / name, folder / f"img_{'abc'[i]}.jpg")
    frames, count = decoding.read_frames(str(folder), "frames", lambda n: np.array([2, 0]))
    assert count == 3 and [dv.index_of(f) for f in frames] == [2, 0]


# -- broken input ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", ["mpeg4-mp4", "h264"])
def test_truncated_mp4_is_unreadable(tmp_path, codec, backend):
    path = dv.truncate(dv.write_video(tmp_path / "clip", 20, codec), 0.6)
    with pytest.raises(err.DataError) as info:
        decoding.read_frames(path, "video", lambda n: np.array([0]), backend=backend)
    # the index (moov atom) is at the end: gone, so no frame can be found
    assert info.value.reason in (err.UNREADABLE, err.ZERO_FRAMES) and info.value.path == path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", ["mpeg4-avi", "vp9"])
def test_truncated_stream_uses_the_real_frame_count(tmp_path, codec, backend):
    path = dv.truncate(dv.write_video(tmp_path / "clip", 30, codec), 0.85)
    log = err.ErrorLog()
    counts = []
    frames, count = decoding.read_frames(
        path, "video", lambda n: counts.append(n) or np.array([0, n - 1]), backend=backend, log=log)
    assert 0 < count < 30
    assert dv.index_of(frames[1]) == count - 1  # the last real frame, not a missing one
    if counts[0] == 30:  # metadata lied: the redraw used the decoded count and was noted
        assert counts[-1] == count
        assert log.note_counts() == {err.FRAME_COUNT_MISMATCH: 1}


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_frame_video(tmp_path, backend):
    path = str(tmp_path / "empty.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    writer.release()  # a container with headers and no frame
    assert os.path.getsize(path) > 0
    with pytest.raises(err.DataError) as info:
        decoding.read_frames(path, "video", lambda n: np.array([0]), backend=backend)
    assert info.value.reason == err.ZERO_FRAMES


@pytest.mark.parametrize("backend", BACKENDS)
def test_garbage_and_missing_files(tmp_path, backend):
    garbage = tmp_path / "noise.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(err.DataError) as info:
        decoding.read_frames(str(garbage), "video", lambda n: np.array([0]), backend=backend)
    assert info.value.reason == err.UNREADABLE
    with pytest.raises(err.DataError) as info:
        decoding.read_frames(str(tmp_path / "nope.mp4"), "video", lambda n: np.array([0]))
    assert info.value.reason == err.MISSING_FILE and "nope.mp4" in str(info.value)


def test_unreadable_frame_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(err.DataError, match="zero_frames"):
        decoding.read_frames(str(empty), "frames", lambda n: np.array([0]))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(err.DataError, match="unreadable"):
        decoding.read_frames(str(not_a_folder), "frames", lambda n: np.array([0]))
    corrupt = dv.write_frames(tmp_path / "corrupt", 4)
    with open(os.path.join(corrupt, "00003.jpg"), "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    with pytest.raises(err.DataError, match="00003.jpg"):
        decoding.read_frames(corrupt, "frames", lambda n: np.array([0, 2]))
    frames, _ = decoding.read_frames(corrupt, "frames", lambda n: np.array([0, 3]))  # others fine
    assert [dv.index_of(f) for f in frames] == [0, 3]
    with pytest.raises(err.DataError, match="missing_file"):
        decoding.read_frames(str(tmp_path / "absent"), "frames", lambda n: np.array([0]))


def test_pyav_missing_gives_install_hint(monkeypatch):
    import builtins
    import sys

    import keras_tin.data

    # forget an earlier import so the lazy import runs again
    monkeypatch.delitem(sys.modules, "keras_tin.data.pyav_backend", raising=False)
    monkeypatch.delattr(keras_tin.data, "pyav_backend", raising=False)
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(ImportError, match="pip install av"):
        decoding._backend("pyav")
    with pytest.raises(ValueError, match="backend="):
        decoding._backend("gstreamer")
