"""A `train` run killed at any point resumes, on rerun, into the files an uninterrupted run
writes: every epoch's log row, history entry and checkpoint, the best model of all epochs,
model.keras; nothing half-written, nothing lost, nothing twice.

The exhaustive sweep kills (in-process, `KERAS_TIN_FAULT_AFTER_WRITE="K:raise"`) after each
file a 2-epoch run writes, on a tiny Dense model through the trainer's own run machinery
(`prepare_run`/`fit_run`), and compares everything with an uninterrupted run. The other
tests kill the real video model: with `os._exit` in a `keras-tin train` subprocess, and in
the middle of or just after a save through the public `train` API.
"""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import training_layouts
from keras_tin import cli
from keras_tin.training import TrainConfig
from keras_tin.training import train

# partial BN: frozen BatchNorm makes the training graph smaller, so the tests faster
TINY = dict(temporal="tsn", depth=18, base_filters=16, image_size=32, frames=2, dropout=0.0,
            batch_size=2, partial_bn=True, verbose=0)


class Kill(BaseException):
    """Like SIGKILL for the code under test: no `except Exception` sees it."""


# -- helpers ---------------------------------------------------------------------------

def log_rows(out):
    with open(os.path.join(out, "log.csv"), newline="") as f:
        return list(csv.DictReader(f))


def leftovers(out):
    return sorted(os.path.join(d, n) for d, _, names in os.walk(out) for n in names
                  if n.startswith(".tmp-"))


def weights_of(path):
    """``{name: array}`` of the model variables in a .weights.h5 or .keras file (read
    with h5py: every dataset under ``layers/``, so the optimizer's state is left out)."""
    import io
    import zipfile

    import h5py

    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            source = io.BytesIO(archive.read("model.weights.h5"))
    else:
        source = path
    found = {}
    with h5py.File(source, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith("layers/"):
                found[name] = obj[()]
        f.visititems(visit)
    assert found, path
    return found


def assert_same_weights(a, b, rtol=1e-5, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


def assert_complete(out, epochs):
    """Every epoch has a row, a history entry and a loadable checkpoint; the run is closed."""
    rows = log_rows(out)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))
    history = json.loads(open(os.path.join(out, "history.json")).read())
    for key, values in history.items():
        assert values == pytest.approx([float(r[key]) for r in rows], rel=1e-6), key
    names = sorted(os.listdir(os.path.join(out, "checkpoints")))
    assert names == [f"epoch_{e:03d}.weights.h5" for e in range(1, epochs + 1)]
    state = json.loads(open(os.path.join(out, "state.json")).read())
    assert state["finished"] and state["epochs_done"] == epochs
    assert not os.path.exists(os.path.join(out, "backup")) and not leftovers(out)
    return rows, history, state


def best_epoch_of(rows, monitor="val_accuracy"):
    """1-based epoch ModelCheckpoint(save_best_only, mode max) keeps: the first maximum."""
    values = [float(r[monitor]) for r in rows]
    return values.index(max(values)) + 1


# -- the exhaustive sweep on a tiny Dense model ------------------------------------------

TOY_CLASSES = ["a", "b", "c"]


def toy_data(config, num_replicas=1):
    from keras_tin.data import DatasetInfo
    from keras_tin.data import ErrorLog
    from keras_tin.data import Sample

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = np.argmax(x[:, :3], axis=1).astype("int32")
    errors = ErrorLog()

    def info(split, indices):
        return DatasetInfo("toy", "toy", split, TOY_CLASSES,
                           [Sample(f"{split}{i}", int(y[i])) for i in indices], errors=errors)

    train_info, val_info = info("train", range(16)), info("val", range(16, 24))
    train_info.val_info = val_info
    train_ds = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(4)
    val_ds = tf.data.Dataset.from_tensor_slices((x[16:], y[16:])).batch(4)
    return train_ds, val_ds, train_info


def toy_model(config, num_classes, num_replicas=1):
    from keras_tin.training.trainer import compile_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(num_classes, name="fc",
                                                                    activation="softmax")])
    return compile_model(model, config, num_classes)


class Shake(keras.callbacks.Callback):
    """Moves the classifier at each epoch's start so validation accuracy goes 1, then about
    0: the best epoch (the first) is followed by a worse one."""

    STEPS = (6.0, -12.0)

    def on_epoch_begin(self, epoch, logs=None):
        kernel, bias = self.model.get_layer("fc").get_weights()
        step = np.zeros_like(kernel)
        step[:3, :3] = np.eye(3) * self.STEPS[epoch]
        self.model.get_layer("fc").set_weights([kernel + step, bias])


def toy_run(out, epochs=2, shake=None):
    from keras_tin.training.trainer import fit_run
    from keras_tin.training.trainer import prepare_run

    config = TrainConfig(dataset="folder", root="toy", output_dir=str(out), epochs=epochs,
                         lr=0.05, lr_steps=(1,), batch_size=4, verbose=0)
    return fit_run(prepare_run(config, toy_data, toy_model), [shake or Shake()])


@pytest.fixture(scope="module")
def toy_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "reference"
    trace = str(out) + ".trace"
    os.environ["KERAS_TIN_WRITE_TRACE"] = trace
    try:
        result = toy_run(out)
    finally:
        del os.environ["KERAS_TIN_WRITE_TRACE"]
    with open(trace) as f:
        writes = [line.split(" ", 1)[1].strip() for line in f]
    rows, _, _ = assert_complete(str(out), 2)
    accuracy = [float(r["val_accuracy"]) for r in rows]
    # the pattern the sweep relies on: a resumed epoch after the best one is worse
    assert accuracy[0] == 1.0 and accuracy[1] < 0.5, accuracy
    return str(out), writes, result


def test_toy_run_writes_each_file_atomically_in_commit_order(toy_reference):
    _, writes, _ = toy_reference
    names = ["/".join(w.split(os.sep)[-2:]) for w in writes]
    epoch = ["checkpoints/epoch_{:03d}.weights.h5", "reference/log.csv",
             "reference/history.json", "backup/epoch_{:03d}.weights.h5", "reference/state.json"]
    expected = ["reference/config.json", "reference/labels.txt"]
    for e in (1, 2):
        files = [f.format(e) for f in epoch]
        if e == 1:  # the only improvement: best.keras before the backup and the commit
            files.insert(3, "reference/best.keras")
        expected += files
    expected += ["reference/model.keras", "reference/state.json"]
    assert names == expected


def test_kill_after_any_write_then_rerun_gives_the_uninterrupted_run(toy_reference, tmp_path,
                                                                      monkeypatch):
    reference, writes, ref_result = toy_reference
    ref_rows = log_rows(reference)
    ref = {name: weights_of(os.path.join(reference, name))
           for name in ["best.keras", "model.keras"] + [
               f"checkpoints/epoch_{e:03d}.weights.h5" for e in (1, 2)]}
    from keras_tin.training.run_folder import SimulatedKill

    for k in range(1, len(writes) + 1):
        out = tmp_path / f"kill_{k:02d}"
        monkeypatch.setenv("KERAS_TIN_FAULT_AFTER_WRITE", f"{k}:raise")
        with pytest.raises(SimulatedKill):
            toy_run(out)
        monkeypatch.delenv("KERAS_TIN_FAULT_AFTER_WRITE")
        result = toy_run(out)  # the rerun
        rows, history, _ = assert_complete(str(out), 2)
        for row, ref_row in zip(rows, ref_rows):
            assert row.keys() == ref_row.keys()
            for key in row:
                assert float(row[key]) == pytest.approx(float(ref_row[key]), rel=1e-5,
                                                        abs=1e-6), (k, writes[k - 1], key)
        assert result.history == history
        assert best_epoch_of(rows) == 1
        for name, weights in ref.items():
            assert_same_weights(weights_of(str(out / name)), weights)
        # nothing trained twice: the rerun starts after the last committed epoch
        committed = sum(1 for w in writes[:k] if w.endswith("state.json"))
        assert result.initial_epoch == min(committed, 2), (k, writes[k - 1])


def test_a_redone_epoch_that_scores_lower_puts_back_the_committed_best(tmp_path, monkeypatch):
    """Training is not bit-for-bit repeatable on every machine: an epoch that improved, wrote
    best.keras and was killed before its commit may score lower when redone. best.keras must
    then be the committed best again, not a model that no log row describes."""
    from keras_tin.training.run_folder import SimulatedKill

    class Better(Shake):
        STEPS = (-1.0, 8.0)

    class Worse(Shake):
        STEPS = (-1.0, -12.0)

    out = tmp_path / "run"
    # writes: config.json, labels.txt, epoch 1's six, then epoch 2's checkpoint, log.csv,
    # history.json and best.keras: the 12th
    monkeypatch.setenv("KERAS_TIN_FAULT_AFTER_WRITE", "12:raise")
    with pytest.raises(SimulatedKill, match="best.keras"):
        toy_run(out, shake=Better())
    monkeypatch.delenv("KERAS_TIN_FAULT_AFTER_WRITE")
    toy_run(out, shake=Worse())
    rows, _, state = assert_complete(str(out), 2)
    assert float(rows[1]["val_accuracy"]) <= float(rows[0]["val_accuracy"])
    assert state["best_epoch"] == 1
    assert_same_weights(weights_of(str(out / "best.keras")),
                        weights_of(str(out / "checkpoints" / "epoch_001.weights.h5")),
                        rtol=0, atol=0)


def test_a_finished_run_reruns_as_a_no_op(toy_reference, tmp_path):
    out = tmp_path / "again"
    toy_run(out)
    before = {n: os.path.getmtime(out / n) for n in ("log.csv", "best.keras", "model.keras")}
    result = toy_run(out)
    assert result.initial_epoch == result.epochs_done == 2 and len(result.history["loss"]) == 2
    assert {n: os.path.getmtime(out / n) for n in before} == before
    from keras_tin.training.trainer import fit_run
    from keras_tin.training.trainer import prepare_run

    longer = TrainConfig(dataset="folder", root="toy", output_dir=str(out), epochs=5, verbose=0)
    with pytest.raises(ValueError, match="finished after 2 epochs.*another --output-dir"):
        fit_run(prepare_run(longer, toy_data, toy_model))


# -- the real video model ----------------------------------------------------------------

@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return training_layouts.three_class_videos(str(tmp_path_factory.mktemp("videos")))


def real_config(videos, out, **changes):
    values = dict(dataset="folder", root=videos, output_dir=str(out), epochs=2,
                  steps_per_epoch=1, validation_steps=3, **TINY)
    values.update(changes)
    return TrainConfig(**values)


def kill_in_save(monkeypatch, where, nth, during):
    """The ``nth`` save of a file whose path contains ``where`` is killed: ``during`` the
    write (the file is left half written, as a kill mid-write leaves it) or just after it."""
    seen = {"n": 0}
    originals = {"save_weights": keras.Model.save_weights, "save": keras.Model.save}

    def patched(kind):
        def save(self, filepath, *args, **kwargs):
            originals[kind](self, filepath, *args, **kwargs)
            if where not in os.fspath(filepath).replace(os.sep, "/"):
                return
            seen["n"] += 1
            if seen["n"] == nth:
                if during:
                    with open(filepath, "r+b") as f:
                        f.truncate(os.path.getsize(filepath) // 2)
                raise Kill(f"killed {'while' if during else 'after'} writing {filepath}")
        return save

    for kind in originals:
        monkeypatch.setattr(keras.Model, kind, patched(kind))
    return lambda: [monkeypatch.setattr(keras.Model, k, v) for k, v in originals.items()]


def assert_loadable_checkpoints(out, epochs):
    for e in range(1, epochs + 1):
        weights_of(str(out / "checkpoints" / f"epoch_{e:03d}.weights.h5"))


def test_kill_while_writing_the_backup_leaves_a_resumable_run(videos, tmp_path, monkeypatch):
    """Fault 1: a kill in the middle of the backup write made every rerun crash."""
    out = tmp_path / "run"
    config = real_config(videos, out, val_split="")
    restore = kill_in_save(monkeypatch, "/backup/", nth=2, during=True)  # epoch 2's backup
    with pytest.raises(Kill):
        train(config)
    restore()
    result = train(config)  # the rerun
    assert [int(r["epoch"]) for r in log_rows(out)] == [0, 1]
    assert_loadable_checkpoints(out, 2)
    assert result.initial_epoch == 1  # epoch 1 was committed before the kill
    assert not (out / "backup").exists() and not leftovers(str(out))


def kill_after_progress_marker(monkeypatch, nth):
    """Kills right after the run records its ``nth`` epoch as done: state.json here, the
    Keras BackupAndRestore backup in the trainer before it (so the test runs on both)."""
    try:
        from keras_tin.training.run_folder import RunFolder

        owner, name = RunFolder, "write_state"
    except ImportError:
        from keras.src.callbacks.backup_and_restore import BackupAndRestore

        owner, name = BackupAndRestore, "_save_model"
    original, calls = getattr(owner, name), {"n": 0}

    def marked(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == nth:
            raise Kill(f"killed after {name} #{nth}")

    monkeypatch.setattr(owner, name, marked)
    return lambda: monkeypatch.setattr(owner, name, original)


def test_kill_just_after_the_last_epochs_backup_loses_nothing(videos, tmp_path, monkeypatch):
    """Fault 2: a kill just after the backup of the last epoch lost its log row and
    checkpoint for good (the backup was written before them), and the rerun trained nothing
    and exited 0. (A kill between the backup weights and the commit is in the sweep above
    and in the kill -9 test below.)"""
    out = tmp_path / "run"
    config = real_config(videos, out, val_split="")
    restore = kill_after_progress_marker(monkeypatch, nth=2)
    with pytest.raises(Kill):
        train(config)
    restore()
    result = train(config)
    assert [int(r["epoch"]) for r in log_rows(out)] == [0, 1]
    assert_loadable_checkpoints(out, 2)
    # the checkpoint of the last epoch is the model it ended with
    assert_same_weights(weights_of(str(out / "model.keras")),
                        weights_of(str(out / "checkpoints" / "epoch_002.weights.h5")),
                        rtol=0, atol=0)
    assert len(result.history["loss"]) == 2
    assert result.initial_epoch == result.epochs_done == 2  # nothing to redo but model.keras
    assert_complete(str(out), 2)


def test_a_kill_in_the_middle_of_any_write_leaves_the_old_file(tmp_path, monkeypatch):
    """A checkpoint killed mid-write used to stay corrupt; now every file is replaced in one
    step, so a kill leaves the previous version (or none) and a temporary file the next
    run removes."""
    from keras_tin.training import run_folder

    model = toy_model(TrainConfig(verbose=0), 3)
    path = str(tmp_path / "checkpoints" / "epoch_001.weights.h5")
    folder = run_folder.RunFolder(str(tmp_path))
    folder.save_weights(model, path)
    before = weights_of(path)
    model.get_layer("fc").set_weights([w + 1 for w in model.get_layer("fc").get_weights()])

    def half_then_killed(tmp):
        model.save_weights(tmp)
        with open(tmp, "r+b") as f:
            f.truncate(os.path.getsize(tmp) // 2)
        raise Kill("killed mid-write")

    with pytest.raises(Kill):
        run_folder.atomic_save(path, half_then_killed)
    assert_same_weights(weights_of(path), before, rtol=0, atol=0)
    run_folder.remove_temporaries(str(tmp_path / "checkpoints"))
    assert os.listdir(tmp_path / "checkpoints") == ["epoch_001.weights.h5"]


class SayClass(keras.callbacks.Callback):
    """With lr 0 and a zero classifier kernel the model always predicts ``choice[epoch]``."""

    def __init__(self, choice):
        super().__init__()
        self.choice = choice

    def on_epoch_begin(self, epoch, logs=None):
        fc = self.model.get_layer("fc")
        kernel, bias = fc.get_weights()
        bias = np.zeros_like(bias)
        bias[self.choice[epoch]] = 5.0
        fc.set_weights([np.zeros_like(kernel), bias])


class InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.at, self.epoch = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.at:
            raise RuntimeError("pre-empted")


@pytest.fixture(scope="module")
def best_then_worse(videos, tmp_path_factory):
    """Epoch 1 always says "a" (val 0.6), then the run is pre-empted in epoch 2; the rerun's
    epoch 2 always says "b" (val 0.2) and epoch 3 "c" (0.2)."""
    out = tmp_path_factory.mktemp("best") / "run"
    config = real_config(videos, out, epochs=3, lr=0.0, lr_steps=())
    choice = {0: 0, 1: 1, 2: 2}
    with pytest.raises(RuntimeError, match="pre-empted"):
        train(config, callbacks=[SayClass(choice), InterruptAt(1)])
    result = train(config, callbacks=[SayClass(choice)])
    return out, result


def test_best_model_survives_a_worse_resumed_epoch(best_then_worse):
    """Fault 3: the first resumed epoch replaced best.keras (0.2 replaced 0.6)."""
    out, _ = best_then_worse
    accuracy = [float(r["val_accuracy"]) for r in log_rows(out)]
    assert accuracy == pytest.approx([0.6, 0.2, 0.2])
    best = keras.saving.load_model(str(out / "best.keras"), compile=False)
    assert int(np.argmax(best.get_layer("fc").get_weights()[1])) == 0  # epoch 1's "a"
    state = json.loads((out / "state.json").read_text())
    assert state["best_epoch"] == 1 and state["best"] == pytest.approx(0.6)


def test_history_json_covers_every_epoch_after_resume(best_then_worse):
    """Fault 4: after a resume history.json held only the resumed epochs."""
    out, result = best_then_worse
    history = json.loads((out / "history.json").read_text())
    assert history["val_accuracy"] == pytest.approx([0.6, 0.2, 0.2])
    assert len(history["loss"]) == 3 and result.history == history
    assert result.initial_epoch == 1


def test_kill_9_of_keras_tin_train_then_rerun(videos, tmp_path, capsys):
    """A real process death (os._exit, nothing cleaned up) right after epoch 2's checkpoint
    is written and before its commit; rerunning the same command finishes the run."""
    out = tmp_path / "run"
    argv = ["train", "--dataset", "folder", "--root", videos, "--output-dir", str(out),
            "--temporal", "tsn", "--depth", "18", "--base-filters", "16", "--image-size", "32",
            "--frames", "2", "--dropout", "0", "--batch-size", "2", "--partial-bn", "true",
            "--epochs", "2", "--steps-per-epoch", "1", "--validation-steps", "3",
            "--verbose", "0"]
    trace = tmp_path / "trace.txt"
    # writes: config.json, labels.txt, then epoch 1's six (best.keras: its first val score
    # is always an improvement), then epoch 2's checkpoint: the 9th
    env = dict(os.environ, KERAS_TIN_FAULT_AFTER_WRITE="9", KERAS_TIN_WRITE_TRACE=str(trace),
               TF_CPP_MIN_LOG_LEVEL="2")
    killed = subprocess.run([sys.executable, "-m", "keras_tin.cli", *argv], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert trace.read_text().splitlines()[-1].endswith("checkpoints/epoch_002.weights.h5")
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 1
    capsys.readouterr()
    assert cli.main(argv) == 0  # the same command again (here in-process)
    assert "Trained epochs 2-2 of 2" in capsys.readouterr().out
    rows, _, state = assert_complete(str(out), 2)
    assert_loadable_checkpoints(out, 2)
    best = weights_of(str(out / "best.keras"))
    at_best = weights_of(str(out / "checkpoints" / f"epoch_{best_epoch_of(rows):03d}.weights.h5"))
    assert_same_weights(best, at_best, rtol=0, atol=0)
    assert state["best_epoch"] == best_epoch_of(rows)
