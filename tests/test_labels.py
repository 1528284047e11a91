"""Packaged class-name lists, their index orders, user label files and decode_predictions."""

import configparser
import fnmatch
import hashlib
import importlib.resources
import json
import os

import numpy as np
import pytest

from keras_tin.weights import labels as tin_labels

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_LABELS = os.path.join(REPO_ROOT, "..", "shared", "labels")

# canonical name -> (file, count, first name, last name, sha256 of the file)
EXPECTED = {
    "kinetics-400": ("kinetics400.txt", 400, "abseiling", "zumba",
                     "e9f2806fe9109b851a80a74841244f6f8c9d10917fa0229cd82bab67f2f8e28f"),
    "kinetics-600": ("kinetics600.txt", 600, "abseiling", "zumba",
                     "8dfca4202520ea8291ce0242ef33b006d0a0772b409663c090a2876bc1978dcf"),
    "something-something-v1": (
        "something_v1.txt", 174, "Holding something", "Poking a hole into some substance",
        "5465813d437e762ccee1d2090d585d6383665e9f0216e055d6d506993a8b3fd7"),
    "something-something-v1-sorted": (
        "something_v1_sorted.txt", 174, "Approaching something with your camera",
        "Wiping something off of something",
        "c9c5a86ece619e1ab2e7ca0614c85377a534873e17108b13243e5d22089a0a85"),
    "something-something-v2": (
        "something_v2.txt", 174, "Approaching something with your camera",
        "Wiping something off of something",
        "c9c5a86ece619e1ab2e7ca0614c85377a534873e17108b13243e5d22089a0a85"),
    "jester": ("jester.txt", 27, "Swiping Left", "Doing other things",
               "e276b0171b36ef05440506d8ee8e10faa4171356c27a4278d6ce868aa1bea77e"),
    "jester-sorted": ("jester_sorted.txt", 27, "Doing other things",
                      "Zooming Out With Two Fingers",
                      "5563494b8147f6ab471fcff2fbc107fd2a0130ed1c3b305f7ffcff0e60e5778c"),
    "ucf101": ("ucf101.txt", 101, "ApplyEyeMakeup", "YoYo",
               "fabeefc51625dad8a5b960156ccf75eea4c3b914d95bc02b43618fd61ecd1930"),
    "hmdb51": ("hmdb51.txt", 51, "brush_hair", "wave",
               "c24c56a7af6f3ea55c8fb2a8e5b2c3a42644fcc5d86e49313536cfbd3499538a"),
}

# mmaction2's horizontal-flip label swaps (SOURCES.md): they must name the left/right pairs.
FLIP_PAIRS = {
    "something-something-v2": {(86, 87), (93, 94), (166, 167)},
    "something-something-v1": {(2, 4), (30, 41), (52, 66)},
    "jester": {(0, 1), (6, 7)},
}
_MIRROR = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}


def _mirror(name):
    return " ".join(_MIRROR.get(word, word) for word in name.split(" "))


def test_canonical_names_and_files():
    assert tin_labels.list_labels() == list(EXPECTED)
    assert tin_labels.LABEL_LISTS == {name: spec[0] for name, spec in EXPECTED.items()}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_packaged_list_count_ends_and_bytes(name):
    filename, count, first, last, sha256 = EXPECTED[name]
    names = tin_labels.get_labels(name)
    assert len(names) == count and len(set(names)) == count
    assert names[0] == first and names[-1] == last
    path = os.path.join(tin_labels.LABELS_DIR, filename)
    with open(path, "rb") as f:
        data = f.read()
    # the checked copies: UTF-8, "\n" line ends, a final newline, no index column
    assert hashlib.sha256(data).hexdigest() == sha256
    assert data.decode("utf-8").split("\n") == names + [""]
    names.append("changed")  # a fresh list each call, the cache unharmed
    assert len(tin_labels.get_labels(name)) == count


@pytest.mark.skipif(not os.path.isdir(SHARED_LABELS), reason="no ../shared/labels beside the repo")
@pytest.mark.parametrize("name", list(EXPECTED))
def test_packaged_list_equals_shared_copy(name):
    filename = EXPECTED[name][0]
    shared = os.path.join(SHARED_LABELS, filename)
    if not os.path.exists(shared):
        pytest.skip(f"{filename} is not in {SHARED_LABELS}")
    with open(shared, "rb") as a, open(os.path.join(tin_labels.LABELS_DIR, filename), "rb") as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("csv_order, sorted_order", [
    ("something-something-v1", "something-something-v1-sorted"),
    ("jester", "jester-sorted"),
])
def test_two_orders_of_the_same_names(csv_order, sorted_order):
    csv_names = tin_labels.get_labels(csv_order)
    sorted_names = tin_labels.get_labels(sorted_order)
    assert set(csv_names) == set(sorted_names)
    assert csv_names != sorted_names
    assert sorted(csv_names) == sorted_names
    # V1 and V2 share one label set and the V2 JSON index is alphabetical
    assert tin_labels.get_labels("something-something-v2") == sorted(
        tin_labels.get_labels("something-something-v1"))


@pytest.mark.parametrize("name", list(FLIP_PAIRS))
def test_mmaction2_flip_pairs_are_the_left_right_classes(name):
    names = tin_labels.get_labels(name)
    for a, b in FLIP_PAIRS[name]:
        assert names[a] != names[b]
        assert _mirror(names[a]) == names[b], (a, names[a], b, names[b])
    index = {n: i for i, n in enumerate(names)}
    mirrored = {tuple(sorted((i, index[_mirror(n)]))) for i, n in enumerate(names)
                if _mirror(n) != n and _mirror(n) in index}
    assert mirrored == FLIP_PAIRS[name]  # and no other left/right pair exists


def test_aliases():
    k400 = tin_labels.get_labels("kinetics-400")
    for alias in ("kinetics400", "K400", "Kinetics_400", " k400 "):
        assert tin_labels.get_labels(alias) == k400
    assert tin_labels.get_labels("k600") == tin_labels.get_labels("kinetics-600")
    for alias in ("sthv1", "ssv1", "something-v1"):
        assert tin_labels.get_labels(alias) == tin_labels.get_labels("something-something-v1")
    for alias in ("sthv1-sorted", "ssv1_sorted", "something-v1-sorted"):
        assert tin_labels.get_labels(alias) == tin_labels.get_labels(
            "something-something-v1-sorted")
    for alias in ("sthv2", "SSV2", "something-v2", "something_something_v2"):
        assert tin_labels.get_labels(alias) == tin_labels.get_labels("something-something-v2")
    assert set(tin_labels.ALIASES.values()) <= set(tin_labels.LABEL_LISTS)
    assert tin_labels.get_labels(("a", "b")) == ["a", "b"]


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ValueError, match="kinetics-700") as info:
        tin_labels.get_labels("kinetics-700")
    message = str(info.value)
    assert "'kinetics-700'" in message
    for name in tin_labels.list_labels():
        assert name in message
    with pytest.raises(ValueError, match="something-something-v1-sorted"):
        tin_labels.get_labels("no/such/file.txt")


def test_decode_predictions_kinetics400_and_docstrings():
    k400 = tin_labels.get_labels("kinetics-400")
    preds = np.zeros((2, 400), np.float32)
    preds[0, 0], preds[0, 399] = 0.25, 0.75
    preds[1, 5] = 1.0
    top = tin_labels.decode_predictions(preds, "kinetics-400", top=2)
    assert top[0] == [(399, "zumba", 0.75), (0, "abseiling", 0.25)]
    assert top[1][0] == (5, k400[5], 1.0)
    assert tin_labels.decode_predictions(preds, "k400", top=1)[0] == [(399, "zumba", 0.75)]
    with pytest.raises(ValueError, match=r"shape \(batch, 174\)"):
        tin_labels.decode_predictions(preds, "something-something-v1")
    for name in tin_labels.list_labels():
        assert f'"{name}"' in tin_labels.decode_predictions.__doc__
        assert f'"{name}"' in tin_labels.get_labels.__doc__
        assert name in tin_labels.__doc__


def test_decode_predictions_with_packaged_and_file_labels(tmp_path):
    # moved from test_weights_loading.py
    ucf = tin_labels.get_labels("ucf101")
    assert len(ucf) == 101 and ucf[0] == "ApplyEyeMakeup" and ucf[-1] == "YoYo"
    assert len(tin_labels.get_labels("hmdb51")) == 51
    preds = np.zeros((2, 101))
    preds[0, 35], preds[0, 2] = 0.7, 0.2
    preds[1, 100] = 1.0
    top = tin_labels.decode_predictions(preds, "ucf101", top=2)
    assert top[0] == [(35, "HammerThrow", 0.7), (2, "Archery", 0.2)]
    assert top[1][0] == (100, "YoYo", 1.0)
    label_file = tmp_path / "labels.csv"
    label_file.write_text("abseiling,0\nair drumming,1\n")
    assert tin_labels.decode_predictions([[0.1, 0.9]], str(label_file), top=1) == [
        [(1, "air drumming", 0.9)]]
    assert tin_labels.get_labels(label_file) == ["abseiling", "air drumming"]  # a Path
    with pytest.raises(ValueError, match="shape"):
        tin_labels.decode_predictions(np.zeros((1, 7)), "hmdb51")


# ------------------------------------------------------------------ users' own label files

def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_sthv2_json_string_indices_out_of_file_order(tmp_path):
    mapping = {"Wiping something off of something": "2", "Approaching something with your "
               "camera": "0", "Putting something, something and something on the table": "1"}
    path = _write(tmp_path, "something-something-v2-labels.json", json.dumps(mapping, indent=1))
    assert tin_labels.read_label_file(path) == [
        "Approaching something with your camera",
        "Putting something, something and something on the table",
        "Wiping something off of something"]
    # integer indices, a byte-order mark, another extension (sniffed from the first "{")
    path = _write(tmp_path, "labels.txt", "\ufeff" + json.dumps({"b": 1, "a": 0}))
    assert tin_labels.read_label_file(path) == ["a", "b"]
    assert tin_labels.get_labels(path) == ["a", "b"]


def test_sthv2_json_of_the_packaged_list_round_trips(tmp_path):
    names = tin_labels.get_labels("something-something-v2")
    mapping = {name: str(i) for i, name in reversed(list(enumerate(names)))}
    path = _write(tmp_path, "something-something-v2-labels.json", json.dumps(mapping))
    assert tin_labels.read_label_file(path) == names


@pytest.mark.parametrize("mapping, problem", [
    ('{"a": "0", "b": "0"}', "index 0 is used twice"),
    ('{"a": "0", "b": "2"}', r"missing \[1\]"),
    ('{"a": "1", "b": "2", "c": "4"}', r"missing \[3\]"),
    ('{"a": "0", "a": "1"}', "repeated"),
    ('{"a": "zero"}', "integer"),
    ('{"a": 0.5}', "integer"),
    ('{"a": -1}', "negative"),
    ('{"a": "0", ', "not valid JSON"),
    ('["a", 3]', "non-empty strings"),
    ('"a"', "expected a JSON object"),
    ("{}", "No class names"),
])
def test_bad_json_label_files_are_refused_naming_the_file(tmp_path, mapping, problem):
    path = _write(tmp_path, "something-something-v2-labels.json", mapping)
    with pytest.raises(ValueError, match=problem) as info:
        tin_labels.read_label_file(path)
    assert path in str(info.value)


def test_json_list_of_names(tmp_path):
    path = _write(tmp_path, "classes.json", '["Swiping Left", "Swiping Right"]')
    assert tin_labels.read_label_file(path) == ["Swiping Left", "Swiping Right"]


def test_csv_names_with_commas_stay_whole(tmp_path):
    names = tin_labels.get_labels("something-something-v1")
    with_commas = [n for n in names if "," in n]
    assert "Putting something, something and something on the table" in with_commas
    assert len(with_commas) == 12
    path = _write(tmp_path, "something-something-v1-labels.csv", "\n".join(names) + "\n")
    assert tin_labels.read_label_file(path) == names
    # a comma-separated name whose tail is a number, but not every line has one
    path = _write(tmp_path, "jester-v1-labels.csv",
                  "Swiping Left\nRolling Hand Forward, 2\nSwiping Right\n")
    assert tin_labels.read_label_file(path) == [
        "Swiping Left", "Rolling Hand Forward, 2", "Swiping Right"]


def test_csv_with_index_column(tmp_path):
    path = _write(tmp_path, "moments_categories.txt",
                  "Putting something, something and something on the table,1\n"
                  "Holding something,0\n\n")
    assert tin_labels.read_label_file(path) == [
        "Holding something", "Putting something, something and something on the table"]
    path = _write(tmp_path, "one_based.csv", "b,2\na,1\n")
    assert tin_labels.read_label_file(path) == ["a", "b"]
    # indices that are not 0..n-1 / 1..n: not an index column, the lines are the names
    path = _write(tmp_path, "gaps.csv", "a,0\nb,2\n")
    assert tin_labels.read_label_file(path) == ["a,0", "b,2"]
    # "id,name" rows under a header (kinetics_400_labels.csv style)
    path = _write(tmp_path, "kinetics_400_labels.csv", "id,name\n1,air drumming\n0,abseiling\n")
    assert tin_labels.read_label_file(path) == ["abseiling", "air drumming"]


def test_index_name_files(tmp_path):
    path = _write(tmp_path, "classInd.txt", "1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n")
    assert tin_labels.read_label_file(path) == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    path = _write(tmp_path, "zero_based.txt", "1\tb c\n0\ta\n")
    assert tin_labels.read_label_file(path) == ["a", "b c"]


def test_class_names_starting_with_digits_are_kept(tmp_path):
    path = _write(tmp_path, "vehicles.txt", "bicycle\n3 wheels\ncar\n")
    assert tin_labels.read_label_file(path) == ["bicycle", "3 wheels", "car"]
    path = _write(tmp_path, "numbers.txt", "3 wheels\n4 wheels\n")  # 3, 4: not an index
    assert tin_labels.read_label_file(path) == ["3 wheels", "4 wheels"]


def test_plain_lists_blank_lines_bom_and_errors(tmp_path):
    path = _write(tmp_path, "labels.txt", "\ufeffabseiling\n\n  air drumming  \n\n")
    assert tin_labels.read_label_file(path) == ["abseiling", "air drumming"]
    path = _write(tmp_path, "brackets.txt", "[weird] name\nother\n")  # not JSON: plain names
    assert tin_labels.read_label_file(path) == ["[weird] name", "other"]
    path = _write(tmp_path, "empty.txt", "\n \n")
    with pytest.raises(ValueError, match="No class names") as info:
        tin_labels.read_label_file(path)
    assert path in str(info.value)
    path = _write(tmp_path, "latin1.txt", "caf\u00e9\n", encoding="latin-1")
    with pytest.raises(ValueError, match="UTF-8") as info:
        tin_labels.read_label_file(path)
    assert path in str(info.value)


# ------------------------------------------------------------------ packaging and users

def test_label_files_are_package_data():
    folder = importlib.resources.files("keras_tin.weights").joinpath("labels")
    for filename in tin_labels.LABEL_LISTS.values():
        assert folder.joinpath(filename).is_file(), filename
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO_ROOT, "setup.cfg"))
    globs = [g.strip() for g in config["options.package_data"]["keras_tin"].split(",")]
    for filename in tin_labels.LABEL_LISTS.values():
        assert any(fnmatch.fnmatch(f"weights/labels/{filename}", g) for g in globs), filename


def test_pretrained_checkpoints_get_labels_only_when_the_order_is_known(monkeypatch):
    from keras_tin.training import prediction
    from keras_tin.weights import registry
    records = {
        "k400": {"dataset": "kinetics-400", "labels": None},
        "sthv2": {"dataset": "something-something-v2"},
        "sthv1": {"dataset": "something-something-v1", "labels": None},
        "jester": {"dataset": "jester", "labels": None},
        "sthv1_mit": {"dataset": "something-something-v1",
                      "labels": "something-something-v1-sorted"},
        "imagenet": {"dataset": "imagenet-1k", "labels": None},
    }
    monkeypatch.setattr(registry, "get_record", lambda name: dict(records[name]))
    assert prediction._pretrained_labels("k400") == tin_labels.get_labels("kinetics-400")
    assert prediction._pretrained_labels("sthv2") == tin_labels.get_labels("ssv2")
    assert prediction._pretrained_labels("sthv1") is None  # CSV or sorted: the record says
    assert prediction._pretrained_labels("jester") is None
    assert prediction._pretrained_labels("sthv1_mit") == tin_labels.get_labels("sthv1-sorted")
    assert prediction._pretrained_labels("imagenet") is None


def test_manifest_labels_name_packaged_lists_of_the_right_size():
    from keras_tin.weights import registry
    named = 0
    for name in registry.list_pretrained():
        record = registry.get_record(name)
        if record.get("labels"):
            assert record["labels"] in tin_labels.LABEL_LISTS, (name, record["labels"])
            assert len(tin_labels.get_labels(record["labels"])) == record["classes"], name
            named += 1
    assert named > 0
