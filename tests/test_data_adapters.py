"""Each dataset adapter on a tiny dataset written in that benchmark's exact layout."""

import json
import os

import numpy as np
import pytest

import data_videos as dv
import keras_tin.data as kd
from keras_tin.data import errors as err


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _first_batch(name, root, split, **kwargs):
    ds = kd.load_dataset(name, root, split=split, frames=4, batch_size=8, image_size=32,
                         drop_remainder=False, seed=0, **kwargs)
    return next(iter(ds))


def test_something_v1(tmp_path):
    root = str(tmp_path)
    _write(f"{root}/something-something-v1-labels.csv",
           "Holding something\nPushing something from left to right\nTearing something, slowly\n")
    _write(f"{root}/something-something-v1-train.csv",
           "1;Pushing something from left to right\n2;Tearing something, slowly\n"
           "3;Juggling something\n4;Holding something\n")
    _write(f"{root}/something-something-v1-validation.csv", "5;Holding something\n")
    _write(f"{root}/something-something-v1-test.csv", "6\n")
    for vid in ("1", "2", "3", "5", "6"):  # 4 is missing on disk
        dv.write_frames(f"{root}/20bn-something-something-v1/{vid}", 6)
    info = kd.list_samples("something-v1", root, "train")
    assert info.classes[1] == "Pushing something from left to right"
    assert [(os.path.basename(s.path), s.label, s.kind) for s in info.samples] == \
        [("1", 1, "frames"), ("2", 2, "frames")]  # comma inside a class name kept
    assert info.errors.counts() == {err.UNKNOWN_LABEL: 1, err.MISSING_FILE: 1}
    assert info.flip is False
    assert [s.label for s in kd.list_samples("something-v1", root, "val").samples] == [0]
    assert [s.label for s in kd.list_samples("something-v1", root, "test").samples] == [-1]
    clips, labels = _first_batch("something-v1", root, "train")
    assert clips.shape == (2, 4, 32, 32, 3) and sorted(labels.numpy().tolist()) == [1, 2]


def test_something_v2(tmp_path):
    root = str(tmp_path)
    labels = {"Holding something next to something": "0", "Putting something on something": "1"}
    _write(f"{root}/labels/something-something-v2-labels.json", json.dumps(labels))
    train = [{"id": "10", "label": "putting a cup on a table",
              "template": "Putting [something] on [something]", "placeholders": ["a cup", "a table"]},
             {"id": "11", "label": "holding a pen next to a book",
              "template": "Holding [something] next to [something]", "placeholders": ["pen", "book"]},
             {"id": "12", "label": "x", "template": "Waving [something]", "placeholders": ["x"]}]
    _write(f"{root}/labels/something-something-v2-train.json", json.dumps(train))
    _write(f"{root}/labels/something-something-v2-validation.json", json.dumps(train[:1]))
    _write(f"{root}/labels/something-something-v2-test.json", json.dumps([{"id": "13"}]))
    for vid in ("10", "11", "12", "13"):
        dv.write_video(f"{root}/20bn-something-something-v2/{vid}", 10, "vp9")
    info = kd.list_samples("something-v2", root, "train")
    assert info.classes == ["Holding something next to something", "Putting something on something"]
    assert [(s.video_id, s.label) for s in info.samples] == [("10", 1), ("11", 0)]
    assert info.samples[0].path.endswith("10.webm")
    assert info.errors.counts() == {err.UNKNOWN_LABEL: 1}
    assert [s.label for s in kd.list_samples("something-v2", root, "validation").samples] == [1]
    assert [s.label for s in kd.list_samples("something-v2", root, "test").samples] == [-1]
    clips, labels = _first_batch("something-v2", root, "val")
    assert clips.shape == (1, 4, 32, 32, 3) and labels.numpy().tolist() == [1]


def test_jester(tmp_path):
    root = str(tmp_path)
    _write(f"{root}/jester-v1-labels.csv", "Swiping Left\nSwiping Right\nNo gesture\n")
    _write(f"{root}/jester-v1-train.csv", "100;Swiping Right\n101;No gesture\n")
    _write(f"{root}/jester-v1-validation.csv", "102;Swiping Left\n")
    for vid in ("100", "101", "102"):
        dv.write_frames(f"{root}/20bn-jester-v1/{vid}", 5)
    info = kd.list_samples("jester", root, "train")
    assert [s.label for s in info.samples] == [1, 2] and info.num_classes == 3
    assert info.flip is False
    clips, labels = _first_batch("jester", root, "val")
    assert labels.numpy().tolist() == [0]


@pytest.mark.parametrize("variant", [400, 600])
def test_kinetics(tmp_path, variant):
    root = str(tmp_path)
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    _write(f"{root}/annotations/train.csv", header +
           "abseiling,aaaaaaaaaaa,14,24,train,0\n"
           "air drumming,bbbbbbbbbbb,0,10,train,0\n"
           "air drumming,ccccccccccc,5,15,train,0\n")  # ccc... was never downloaded
    _write(f"{root}/annotations/validate.csv", header + "zumba,ddddddddddd,1,11,validate,0\n"
           "abseiling,eeeeeeeeeee,30,40,validate,0\n")
    dv.write_video(f"{root}/train/abseiling/aaaaaaaaaaa_000014_000024", 10, "h264")
    dv.write_video(f"{root}/train/air_drumming/bbbbbbbbbbb_000000_000010", 10, "h264")
    dv.write_video(f"{root}/val/zumba/ddddddddddd_000001_000011", 10, "h264")
    dv.write_video(f"{root}/val/abseiling/eeeeeeeeeee_000030_000040", 10, "h264")
    name = f"kinetics{variant}"
    info = kd.list_samples(name, root, "train")
    assert info.classes == ["abseiling", "air drumming"]
    assert [(s.video_id, s.label) for s in info.samples] == \
        [("aaaaaaaaaaa_000014_000024", 0), ("bbbbbbbbbbb_000000_000010", 1)]
    assert info.errors.counts() == {err.MISSING_FILE: 1}
    val = kd.list_samples(name, root, "val")  # validation classes index like training's
    assert [s.label for s in val.samples] == [0] and val.errors.counts() == {err.UNKNOWN_LABEL: 1}
    clips, labels = _first_batch(name, root, "train")
    assert clips.shape == (2, 4, 32, 32, 3)


def test_ucf101_splits(tmp_path):
    root = str(tmp_path)
    lists = f"{root}/ucfTrainTestlist"
    _write(f"{lists}/classInd.txt", "1 ApplyEyeMakeup\n2 HandstandPushups\n")
    videos = {"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi": 1,
              "HandstandPushups/v_HandStandPushups_g08_c01.avi": 2,
              "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": 1,
              "HandstandPushups/v_HandStandPushups_g01_c01.avi": 2}
    names = list(videos)
    for fold in (1, 2, 3):
        train, test = (names[:2], names[2:]) if fold != 2 else (names[2:], names[:2])
        _write(f"{lists}/trainlist0{fold}.txt", "".join(f"{v} {videos[v]}\n" for v in train))
        _write(f"{lists}/testlist0{fold}.txt", "".join(f"{v}\n" for v in test))
    for v in names:
        dv.write_video(f"{root}/UCF-101/{v[:-4]}", 8, "mpeg4-avi")
    info = kd.list_samples("ucf101", root, "train", fold=1)
    assert info.classes == ["ApplyEyeMakeup", "HandstandPushups"]
    assert [(s.video_id, s.label) for s in info.samples] == [(names[0], 0), (names[1], 1)]
    test2 = kd.list_samples("ucf101", root, "test", fold=2)
    assert [s.video_id for s in test2.samples] == names[:2]
    with pytest.raises(ValueError, match="fold=4"):
        kd.list_samples("ucf101", root, "train", fold=4)
    clips, labels = _first_batch("ucf101", root, "test", fold=3)
    assert sorted(labels.numpy().tolist()) == [0, 1]


def test_hmdb51_split_flags(tmp_path):
    root = str(tmp_path)
    splits = f"{root}/testTrainMulti_7030_splits"
    for cls, vids in {"brush_hair": ["a.avi", "b.avi", "c.avi"], "cartwheel": ["d.avi", "e.avi"]}.items():
        for fold in (1, 2, 3):
            flags = ["1", "2", "0"] if fold == 1 else ["2", "1", "1"]
            _write(f"{splits}/{cls}_test_split{fold}.txt",
                   "".join(f"{v} {f}\n" for v, f in zip(vids, flags)))
        for v in vids:
            dv.write_video(f"{root}/hmdb51/{cls}/{v[:-4]}", 8, "mjpeg")
    info = kd.list_samples("hmdb51", root, "train", fold=1)
    assert info.classes == ["brush_hair", "cartwheel"]
    assert [(s.video_id, s.label) for s in info.samples] == [("a.avi", 0), ("d.avi", 1)]
    test = kd.list_samples("hmdb51", root, "test", fold=1)
    assert [(s.video_id, s.label) for s in test.samples] == [("b.avi", 0), ("e.avi", 1)]
    train2 = kd.list_samples("hmdb51", root, "train", fold=2)
    assert [s.video_id for s in train2.samples] == ["b.avi", "c.avi", "e.avi"]  # c.avi unused in 1
    clips, labels = _first_batch("hmdb51", root, "test")
    assert sorted(labels.numpy().tolist()) == [0, 1]


def test_mmit_multi_hot(tmp_path):
    root = str(tmp_path)
    _write(f"{root}/moments_categories.txt", "clapping,0\ndancing,1\nsinging,2\n")
    _write(f"{root}/trainingSet.txt", "clapping/x1.mp4,0,2\ndancing/x2.mp4,1\nsinging/x3.mp4,7\n")
    _write(f"{root}/validationSet.txt", "v/y1.mp4,dancing,singing\n")
    for rel in ("clapping/x1", "dancing/x2", "singing/x3"):
        dv.write_video(f"{root}/videos/training/{rel}", 8, "mpeg4-mp4")
    dv.write_video(f"{root}/videos/validation/v/y1", 8, "mpeg4-mp4")
    info = kd.list_samples("mmit", root, "train")
    assert info.multilabel and info.classes == ["clapping", "dancing", "singing"]
    assert [s.label for s in info.samples] == [(0, 2), (1,)]
    assert info.errors.counts() == {err.UNKNOWN_LABEL: 1}  # class 7 does not exist
    clips, labels = _first_batch("mmit", root, "train", shuffle=False, deterministic=True)
    assert labels.dtype == np.float32 or labels.dtype.name == "float32"
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, 1], [0, 1, 0]])
    val = kd.list_samples("mmit", root, "val")
    assert [s.label for s in val.samples] == [(1, 2)]  # names work as labels too


def test_folder_of_videos_and_frames(tmp_path):
    root = str(tmp_path)
    dv.write_video(f"{root}/train/cat/a", 8, "mpeg4-mp4")
    dv.write_video(f"{root}/train/cat/b", 8, "mjpeg")
    dv.write_frames(f"{root}/train/dog/clip1", 6)
    _write(f"{root}/train/dog/notes.txt", "not a video")
    dv.write_video(f"{root}/val/dog/c", 8, "vp9")
    info = kd.list_samples("folder", root, "train")
    assert info.classes == ["cat", "dog"]
    assert [(s.video_id, s.label, s.kind) for s in info.samples] == \
        [("cat/a.mp4", 0, "video"), ("cat/b.avi", 0, "video"), ("dog/clip1", 1, "frames")]
    assert kd.list_samples("folder", f"{root}/train", "test").num_classes == 2  # no split folder
    clips, labels = _first_batch("folder", root, "train", shuffle=False, deterministic=True)
    assert labels.numpy().tolist() == [0, 0, 1]


def test_folder_missing_split_is_an_error_not_two_classes(tmp_path):
    root = str(tmp_path)
    dv.write_frames(f"{root}/train/cat/clip1", 4)
    dv.write_frames(f"{root}/train/dog/clip2", 4)
    with pytest.raises(FileNotFoundError, match=r"split folders \['train'\] but none for "
                                                r"split='val'"):
        kd.list_samples("folder", root, "val")
    assert kd.list_samples("folder", root, "train").classes == ["cat", "dog"]


def test_unknown_dataset_and_root(tmp_path):
    with pytest.raises(ValueError, match="name='kinetics700'"):
        kd.list_samples("kinetics700", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        kd.list_samples("ucf101", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        kd.list_samples("ucf101", str(tmp_path))
