"""The recipe pieces: config files and flags, the step schedule, lr scaling, SGD with L2,
and the error messages for common mistakes."""

import argparse
import json

import keras
import numpy as np
import pytest

from keras_tin.training import TrainConfig
from keras_tin.training import add_config_arguments
from keras_tin.training import config_from_args
from keras_tin.training import scaled_lr
from keras_tin.training import step_schedule
from keras_tin.training import checks
from keras_tin.training.optimizers import SGDL2
from keras_tin.training.trainer import build_model


def parse(argv, defaults=None):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, defaults)
    return config_from_args(parser.parse_args(argv), defaults)


def test_paper_defaults():
    c = TrainConfig()
    assert (c.lr, c.momentum, c.weight_decay, c.epochs, c.lr_steps) == (0.005, 0.9, 5e-4, 25,
                                                                           (10, 20))
    assert (c.frames, c.dropout, c.depth) == (8, 0.5, 50)
    # partial BN is the paper's (TSN's) fine-tuning recipe: on when starting from weights
    assert c.partial_bn == "auto" and not c.use_partial_bn()
    assert c.replace(weights="kinetics.keras").use_partial_bn()
    assert c.clipnorm > 0


def test_schedule_divides_by_ten_at_10_and_20():
    s = step_schedule(0.005, (10, 20), 0.1)
    assert [s(e) for e in (0, 9, 10, 19, 20, 24)] == pytest.approx(
        [0.005, 0.005, 0.0005, 0.0005, 0.00005, 0.00005])


def test_linear_lr_scaling_with_replicas():
    c = TrainConfig(batch_size=8, lr=0.005)
    assert scaled_lr(c, 1) == pytest.approx(0.005)
    assert scaled_lr(c, 4) == pytest.approx(0.02)  # global batch 32
    assert scaled_lr(c.replace(lr_batch_size=64), 8) == pytest.approx(0.005)  # 8 x 8 = 64


def test_json_config_then_flags_override(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"dataset": "mmit", "epochs": 3, "lr_steps": [1, 2]}))
    c = parse(["--config", str(path), "--epochs", "5", "--partial-bn", "false"])
    assert (c.dataset, c.epochs, c.lr_steps, c.partial_bn) == ("mmit", 5, (1, 2), False)
    assert c.multilabel  # derived from the dataset
    assert not parse(["--dataset", "ucf101"]).multilabel


def test_yaml_config_when_pyyaml_is_installed(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"depth": 18, "lr": 0.01}))
    c = parse(["--config", str(path)])
    assert (c.depth, c.lr) == (18, 0.01)


def test_unknown_config_key_is_named(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"learning_rate": 0.1}))
    with pytest.raises(ValueError, match="learning_rate"):
        parse(["--config", str(path)])


def test_sgd_l2_matches_pytorch_sgd_with_weight_decay():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")
    grads = [(rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32"))
             for _ in range(4)]
    tw, tb = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    opt = torch.optim.SGD([{"params": [tw], "weight_decay": 0.05},
                           {"params": [tb], "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    for gw, gb in grads:
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        opt.step()
    kw, kb = keras.Variable(w0), keras.Variable(b0)
    sgd = SGDL2(learning_rate=0.1, momentum=0.9, l2=0.05)
    for gw, gb in grads:
        sgd.apply_gradients([(gw, kw), (gb, kb)])
    # kernels decay, biases do not; both follow PyTorch to float precision
    np.testing.assert_allclose(np.asarray(kw), tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(kb), tb.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(kw), w0)


def test_errors_quote_value_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Received: root='.*nowhere'.*--root"):
        checks.check_dataset("ucf101", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"Received: split='validaton'.*'val'"):
        checks.check_split("validaton")
    with pytest.raises(ValueError, match=r"Received: dataset='kinetics'"):
        checks.check_dataset("kinetics", str(tmp_path))


@pytest.fixture(scope="module")
def tiny_model():
    c = TrainConfig(depth=18, base_filters=16, image_size=32, dropout=0.0)
    return build_model(c, 3, compile=False)


def test_frames_and_class_mismatch_messages(tiny_model):
    with pytest.raises(ValueError, match=r"8 frames.*frames=16.*--frames 8"):
        checks.check_frames(tiny_model, 16)
    with pytest.raises(ValueError, match=r"predicts 3 classes.*has 101.*keras-tin train --weights"):
        checks.check_classes(tiny_model, 101, weights="x.keras")
    checks.check_frames(tiny_model, 8)
    checks.check_classes(tiny_model, 3)


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_init_from_weights_with_another_class_count_drops_the_head(tiny_model, tmp_path, suffix):
    path = str(tmp_path / f"source{suffix}")
    if suffix == ".keras":
        tiny_model.save(path)
    else:
        tiny_model.save_weights(path)
    c = TrainConfig(depth=18, base_filters=16, image_size=32, dropout=0.0, weights=path,
                    verbose=0)
    model = build_model(c, 5, compile=False)
    assert model.output_shape[-1] == 5
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0],
                                  tiny_model.get_layer("conv1").get_weights()[0])
    same = build_model(c, 3, compile=False)  # same class count: everything, head included
    np.testing.assert_array_equal(same.get_layer("fc").get_weights()[0],
                                  tiny_model.get_layer("fc").get_weights()[0])


def test_trained_keras_file_loads_after_plain_import_keras_tin(tmp_path):
    """A .keras file compiled with SGDL2 (what `keras-tin train` writes) loads in a fresh
    process that only does `import keras_tin` (SGDL2 must be registered there)."""
    import subprocess
    import sys

    model = build_model(TrainConfig(temporal="tsn", depth=18, base_filters=16, image_size=32,
                                    frames=2, dropout=0.0), 3)
    assert isinstance(model.optimizer, SGDL2)
    path = tmp_path / "trained.keras"
    model.save(str(path))
    code = ("import keras_tin, keras; m = keras.models.load_model(%r); "
            "print(type(m.optimizer).__name__, m.optimizer.l2)" % str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["SGDL2", str(model.optimizer.l2)]


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_fine_tune_from_a_file_with_another_class_count(tmp_path, suffix, capsys):
    """--weights with a local file of another class count: everything but the classifier
    loads (keras_tin.weights' all-or-nothing transfer), and the dropped head is announced."""
    config = TrainConfig(temporal="tin", depth=18, base_filters=16, image_size=32, frames=4,
                         dropout=0.0)
    source = build_model(config, 5, compile=False)
    path = str(tmp_path / f"source{suffix}")
    (source.save if suffix == ".keras" else source.save_weights)(path)
    model = build_model(config.replace(weights=path), 3, compile=False)
    assert "5 classes but the model has 3" in capsys.readouterr().out
    for name in ("conv1", "layer2_0_conv1", "layer4_1_bn2"):
        for got, want in zip(model.get_layer(name).weights, source.get_layer(name).weights):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert model.output_shape == (None, 3)
