"""What `keras-tin train` reports: exact epoch metrics, skipped videos and decode notes, a
diverging loss, the partial-BN default, top-5 only where it means something, and one-line
errors for the mistakes a user makes."""

import csv
import json
import os
import re

import keras
import numpy as np
import pytest

import data_videos
import training_layouts
from keras_tin import cli
from keras_tin.training import TrainConfig
from keras_tin.training import build_model
from keras_tin.training import train

# partial BN on: frozen BatchNorm makes the training graph smaller, so the tests faster
TINY = dict(temporal="tsn", depth=18, base_filters=16, image_size=32, frames=4, dropout=0.0,
            batch_size=2, partial_bn=True, verbose=0)
TINY_FLAGS = ["--temporal", "tsn", "--depth", "18", "--base-filters", "16", "--image-size",
              "32", "--frames", "4", "--dropout", "0", "--batch-size", "2", "--partial-bn",
              "true"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return training_layouts.three_class_videos(str(tmp_path_factory.mktemp("videos")))


def one_error_line(capsys, argv, pattern):
    capsys.readouterr()
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"keras-tin {argv[0]}: error: "), err
    assert re.search(pattern, err), err
    return captured


class SayA(keras.callbacks.Callback):
    """A zero classifier kernel and bias (5, 0, 0): every clip is called "a"."""

    def on_epoch_begin(self, epoch, logs=None):
        fc = self.model.get_layer("fc")
        kernel, bias = fc.get_weights()
        fc.set_weights([np.zeros_like(kernel), np.array([5.0, 0.0, 0.0], bias.dtype)])


def test_epoch_train_metrics_count_only_the_real_batches(videos, tmp_path):
    """Fault 5: with the pipeline's unknown length Keras counted one extra empty batch in the
    epoch's training metrics. Learning rate 0 and a model that always says "a": the logged
    numbers must be those of the 6 training clips (3 batches of 2), counted by hand."""
    out = tmp_path / "run"
    config = TrainConfig(dataset="folder", root=videos, val_split="", output_dir=str(out),
                         epochs=1, lr=0.0, lr_steps=(), **TINY)
    result = train(config, callbacks=[SayA()])
    labels = np.array([0, 0, 1, 1, 2, 2])  # every training clip is seen once
    p = np.exp([5.0, 0.0, 0.0]) / np.exp([5.0, 0.0, 0.0]).sum()
    expected_accuracy = np.mean(labels == 0)
    expected_loss = float(np.mean(-np.log(p[labels])))
    with open(out / "log.csv", newline="") as f:
        row = next(csv.DictReader(f))
    row = {k: float(row[k]) for k in ("accuracy", "loss")}
    assert row["accuracy"] == pytest.approx(expected_accuracy, abs=1e-6)  # 1/3, not 2/8
    assert row["loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert result.history["accuracy"] == [row["accuracy"]]


def test_top5_only_with_more_than_5_classes(tmp_path):
    """Fault 9: top-5 with 3 classes was top-3, always 1.0."""
    from keras_tin.training.trainer import compile_model

    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    for classes, has_top5 in ((3, False), (5, False), (6, True)):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(classes,
                                                                        activation="softmax")])
        compile_model(model, TrainConfig(verbose=0), classes)
        logs = model.evaluate(x, np.arange(8) % classes, verbose=0, return_dict=True)
        assert ("top5" in logs) == has_top5, (classes, logs)


def test_partial_bn_only_when_fine_tuning_by_default(tmp_path):
    """Fault 8: partial BN froze every BatchNorm but the first even from scratch."""
    from keras_tin.applications.partial_bn import batchnorm_layers

    base = {**TINY, "frames": 2}
    del base["partial_bn"]  # the default

    def frozen(**changes):
        model = build_model(TrainConfig(**base, **changes), 3, compile=False)
        return sum(not layer.trainable for layer in batchnorm_layers(model))

    weights = str(tmp_path / "w.weights.h5")
    build_model(TrainConfig(**base), 3, compile=False).save_weights(weights)
    assert frozen() == 0  # from scratch: every BN learns
    with_weights = frozen(weights=weights)
    assert with_weights > 10  # fine-tuning: all but the first
    assert frozen(partial_bn=True) == with_weights  # explicit values are honoured
    assert frozen(weights=weights, partial_bn=False) == 0
    assert TrainConfig(partial_bn="false").partial_bn is False
    with pytest.raises(ValueError, match="partial_bn must be true, false or auto"):
        TrainConfig(partial_bn="sometimes")


def test_help_lists_the_choices(capsys):
    """Fault 10: `train --help` did not say which values choice-type options take."""
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for choices in ("{tin,tsm,tsn,tada2d,tea,stm,tcp,msnet}", "{18,34,50,101,152}", "{segment,dense}", "{opencv,pyav}",
                    "{auto,portable,custom_op}", "{skip,raise}", "{true,false,auto}",
                    "{default,mirrored,multi_worker,tpu,data_parallel}", "something-v2"):
        assert choices in text, choices
    assert "only when starting from --weights" in text  # what partial BN "auto" means


def test_config_choices_match_the_code():
    from keras_tin.applications import temporal_modules
    from keras_tin.applications.temporal_resnet import DEPTHS
    from keras_tin.data import ADAPTERS
    from keras_tin.data.decoding import BACKENDS
    from keras_tin.data.errors import POLICIES
    from keras_tin.data.sampling import SAMPLINGS
    from keras_tin.ops.dispatch import IMPLEMENTATIONS
    from keras_tin.training import config

    assert sorted(config.DATASETS) == sorted(ADAPTERS)
    assert sorted(config.TEMPORAL_MODULES) == sorted(temporal_modules.names())  # registered
    assert config.DEPTHS == tuple(DEPTHS)
    assert config.SAMPLINGS == SAMPLINGS and config.DECODERS == BACKENDS
    assert config.IMPLEMENTATIONS == IMPLEMENTATIONS and config.ON_ERROR == POLICIES


def test_user_errors_are_one_line(videos, tmp_path, capsys):
    """Fault 10: expected mistakes print one clear line, not a traceback."""
    out = str(tmp_path / "run")
    base = ["train", "--dataset", "folder", "--output-dir", out, "--epochs", "1",
            "--steps-per-epoch", "1", "--verbose", "0", *TINY_FLAGS]
    one_error_line(capsys, [*base, "--root", str(tmp_path / "nowhere")],
                   r"Dataset root does not exist.*nowhere")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sampling": "sparse"}))
    one_error_line(capsys, [*base, "--root", videos, "--config", str(bad)],
                   r"sampling must be one of .*segment.*dense.*Received: sampling='sparse'")
    one_error_line(capsys, [*base, "--root", videos, "--steps-per-epoch", "0"],
                   r"steps_per_epoch must be a positive integer")
    empty = tmp_path / "empty"
    for split in ("train", "val"):
        (empty / split / "a").mkdir(parents=True)
    one_error_line(capsys, [*base, "--root", str(empty)], r"no usable samples")
    one_error_line(capsys, [*base, "--root", videos, "--weights", "resnet51_imagenet"],
                   r"weights must be a pretrained name or an existing file.*resnet51")
    assert not os.path.exists(os.path.join(out, "model.keras"))


def test_a_diverging_run_stops_with_a_clear_message(videos, tmp_path, capsys):
    """Fault 7: no NaN guard; a NaN loss trained on and exited 0."""
    weights = str(tmp_path / "nan.weights.h5")
    model = build_model(TrainConfig(**TINY), 3, compile=False)
    fc = model.get_layer("fc")
    fc.set_weights([np.full_like(w, np.nan) for w in fc.get_weights()])
    model.save_weights(weights)
    out = tmp_path / "run"
    one_error_line(capsys, ["train", "--dataset", "folder", "--root", videos, "--output-dir",
                            str(out), "--weights", weights, "--epochs", "1", "--val-split", "",
                            "--steps-per-epoch", "2", "--verbose", "0", *TINY_FLAGS],
                   r"Training diverged: the loss became nan at epoch 1, batch 1 .*Lower the "
                   r"learning rate \(--lr 0.005 now; try 0.0005\)")
    assert not (out / "model.keras").exists() and not (out / "checkpoints" /
                                                         "epoch_001.weights.h5").exists()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """4 good training videos, one broken file, one 2-frame clip (looped to 4 frames)."""
    root = tmp_path_factory.mktemp("faulty")
    for split in ("train", "val"):
        for name in "ab":
            for i in range(2):
                training_layouts._video(str(root / split / name / f"v{i}.mp4"))
    (root / "train" / "a" / "broken.mp4").write_bytes(b"\x00" * 2000)
    short = data_videos.write_video(str(root / "train" / "b" / "short"), 2, "mpeg4-mp4", 48, 48)
    return root, short


def test_skip_report_notes_and_summary(faulty, tmp_path, capsys):
    """Fault 6: no --report, no decode notes and no end-of-run summary."""
    root, short = faulty
    report = tmp_path / "report.json"
    code = cli.main(["train", "--dataset", "folder", "--root", str(root), "--output-dir",
                     str(tmp_path / "run"), "--epochs", "1", "--val-split", "", "--report",
                     str(report), *TINY_FLAGS])
    out = capsys.readouterr().out
    assert code == 0
    summary = [line for line in out.splitlines() if line.startswith("Data: ")]
    assert summary and summary[-1].startswith("Data: 6 training videos;"), out
    assert "1 unreadable" in summary[-1] and "1 looped_short_clip" in summary[-1]
    assert str(report) in summary[-1]
    data = json.loads(report.read_text())
    assert [s["path"] for s in data["skipped"]] == [str(root / "train" / "a" / "broken.mp4")]
    assert [n["path"] for n in data["notes"]] == [short]


def test_on_error_raise_names_the_file(faulty, tmp_path, capsys):
    root, _ = faulty
    one_error_line(capsys, ["train", "--dataset", "folder", "--root", str(root), "--output-dir",
                            str(tmp_path / "run"), "--epochs", "1", "--val-split", "",
                            "--on-error", "raise",
                            "--verbose", "0", *TINY_FLAGS], r"broken\.mp4")


def test_every_video_skipped_fails_with_the_skip_report(tmp_path, capsys):
    """Fault 6: a run where every clip was skipped exited 0 with an untrained model."""
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name in "ab":
            for i in range(2):
                path = root / split / name / f"v{i}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                if split == "train":
                    path.write_bytes(b"\x00" * 2000)
                else:
                    training_layouts._video(str(path))
    out = tmp_path / "run"
    one_error_line(capsys, ["train", "--dataset", "folder", "--root", str(root), "--output-dir",
                            str(out), "--epochs", "1", "--val-split", "", "--verbose", "0",
                            *TINY_FLAGS],
                   r"No training batch in epoch 1: 4 of 4 training videos .* were skipped "
                   r"\(4 unreadable\).*--report PATH")
    assert not (out / "model.keras").exists() and not (out / "best.keras").exists()
