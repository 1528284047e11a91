"""`keras-tin evaluate` / `predict` on every model file a user has: .keras, a run checkpoint,
.tflite, a SavedModel folder; one-line errors; top-5 only when it means something."""

import json

import numpy as np
import pytest

import training_layouts
from keras_tin import cli
from keras_tin.training import evaluation
from keras_tin.training.model_files import open_model


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-class run of `keras-tin train` (1 epoch) and its exports."""
    import keras

    from keras_tin.export import export_saved_model
    from keras_tin.export import export_tflite

    root = tmp_path_factory.mktemp("model_files")
    data, out = root / "data", root / "run"
    training_layouts.synthetic_direction_pair(str(data), num_train=40, num_val=12)
    assert cli.main(["train", "--dataset", "folder", "--root", str(data), "--output-dir",
                     str(out), "--depth", "18", "--base-filters", "16", "--image-size", "32",
                     "--epochs", "1", "--batch-size", "8", "--partial-bn", "false",
                     "--flip", "false", "--verbose", "0"]) == 0
    model = keras.saving.load_model(str(out / "best.keras"), compile=False)
    names = (out / "labels.txt").read_text().splitlines()
    export_tflite(model, str(root / "model.tflite"), class_names=names)
    export_saved_model(model, str(root / "saved_model"), class_names=names)
    return data, out, root


def _evaluate(model_spec, data, tmp_path, name):
    assert cli.main(["evaluate", "--model", model_spec, "--dataset", "folder", "--root",
                     str(data), "--split", "val", "--output-dir", str(tmp_path / name)]) == 0
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    return metrics, np.load(tmp_path / name / "scores.npz")["scores"]


def test_evaluate_every_model_file_kind(trained_run, tmp_path):
    data, out, root = trained_run
    reference, scores = _evaluate(str(out / "best.keras"), data, tmp_path, "keras")
    assert "top5" not in reference  # 2 classes: top-5 would always be 1.0
    checkpoints = sorted((out / "checkpoints").glob("epoch_*.weights.h5"))
    for spec in (checkpoints[-1], root / "model.tflite", root / "saved_model"):
        metrics, got = _evaluate(str(spec), data, tmp_path, spec.name)
        assert metrics["videos"] == reference["videos"]
        # the SavedModel takes uint8 clips (rounded), the others the same float clips
        np.testing.assert_allclose(got, scores, atol=2e-2 if "saved" in spec.name else 1e-4)


def test_predict_names_classes_for_every_model_file_kind(trained_run, capsys):
    data, out, root = trained_run
    clip = sorted((data / "val").glob("*/*"))[0]
    names = (out / "labels.txt").read_text().splitlines()
    checkpoint = sorted((out / "checkpoints").glob("epoch_*.weights.h5"))[-1]
    tops = []
    # the exports have no labels.txt beside them: their names come from their metadata
    for spec in (out / "best.keras", checkpoint, root / "model.tflite", root / "saved_model"):
        capsys.readouterr()
        assert cli.main(["predict", str(clip), "--model", str(spec), "--json"]) == 0
        printed = capsys.readouterr().out
        result = json.loads(printed[printed.index("["):])[0]
        assert {n for n, _ in result["top"]} == set(names)
        tops.append(result["top"][0][0])
    assert len(set(tops)) == 1


def test_model_file_errors_are_one_line(tmp_path, capsys):
    bare = tmp_path / "lonely.weights.h5"
    bare.write_bytes(b"")
    cases = [(str(bare), "bare weights file"),
             (str(tmp_path), "without saved_model.pb"),
             (str(tmp_path / "missing.keras"), "Model file not found"),
             ("not_a_record", "is neither an existing model file")]
    for spec, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            open_model(spec)
        code = cli.main(["evaluate", "--model", spec, "--dataset", "folder", "--root",
                         str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 1 and message in err and "Traceback" not in err, err


def test_top5_is_refused_when_it_cannot_fail():
    scores = np.eye(3)[[0, 1, 2, 0]]
    assert evaluation.topk_accuracy(scores, np.array([0, 1, 2, 1]), 1) == 0.75
    with pytest.raises(ValueError, match="top-5 accuracy is meaningless with 3 classes"):
        evaluation.topk_accuracy(scores, np.array([0, 1, 2, 1]), 5)


def test_confusion_matrix_plot_shows_counts(tmp_path, monkeypatch):
    import matplotlib.axes

    written = []
    original = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda self, x, y, s, **kw: written.append((x, y, s))
                        or original(self, x, y, s, **kw))
    matrix = np.array([[5, 1, 0], [0, 4, 2], [0, 0, 7]])
    evaluation.plot_confusion(matrix, ["a", "b", "c"], str(tmp_path / "cm.png"))
    assert sorted(written) == sorted((j, i, str(c)) for (i, j), c in np.ndenumerate(matrix)
                                     if c)
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_trained_keras_files_carry_their_class_names(trained_run, tmp_path):
    """best.keras / model.keras hold the run's class names in their keras_tin metadata, so
    they survive being copied away from labels.txt."""
    import shutil

    from keras_tin.export import read_metadata

    data, out, root = trained_run
    names = (out / "labels.txt").read_text().splitlines()
    for name in ("best.keras", "model.keras"):
        alone = tmp_path / name
        shutil.copy(out / name, alone)
        assert read_metadata(str(alone))["class_names"] == names
