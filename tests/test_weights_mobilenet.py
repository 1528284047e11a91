"""Converted TSM-MobileNetV2 checkpoints (mmaction2 and MIT layouts) give the PyTorch logits
of independent references written with the publishers' module structure
(weights/torch_reference_mobilenet.py); mismatched models and checkpoints are refused."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_reference_mobilenet as trm  # noqa: E402
from keras_tin.applications.mobilenet_v2 import TINMobileNetV2  # noqa: E402
from keras_tin.applications.mobilenet_v2 import TSMMobileNetV2  # noqa: E402
from keras_tin.applications.mobilenet_v2 import TSNMobileNetV2  # noqa: E402
from keras_tin.weights import layouts_mobilenet  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402

FRAMES, SIZE, CLASSES, CLIPS = 8, 64, 7, 2
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4
SHAPE = (FRAMES, SIZE, SIZE, 3)


def clips(seed=0):
    """Per-clip colours and per-frame moving gratings plus noise (0-255 RGB)."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(-1, 1, SIZE, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    colour = rng.uniform(40, 215, (CLIPS, FRAMES, 1, 1, 3))
    phase = rng.uniform(0, 2 * np.pi, (CLIPS, 1, 1, 1, 1)) + np.linspace(0, 2.0, FRAMES)[
        None, :, None, None, None]
    wave = 60 * np.sin(4 * (np.cos(phase) * xx[..., None] + np.sin(phase) * yy[..., None]))
    noise = rng.normal(0, 12, (CLIPS, FRAMES, SIZE, SIZE, 3))
    return np.clip(colour + wave + noise, 0, 255).astype(np.float32)


def folded(x):
    """0-255 NTHWC clips -> normalised, frame-folded NCHW torch tensor."""
    frames = ((x - MEAN) / STD).reshape(-1, SIZE, SIZE, 3).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(frames))


def torch_logits(ref, x):
    with torch.no_grad():
        return ref(folded(x)).numpy()


def keras_logits(model, x):
    return np.asarray(model(x, training=False))


def save(state_dict, path, legacy=False):
    torch.save({"state_dict": state_dict, "meta": {"epoch": 100}}, str(path),
               _use_new_zipfile_serialization=not legacy)
    return str(path)


def reference(layout, seed, classes=CLASSES, shift=True):
    """(reference module, its state dict as the publisher's checkpoint holds it)."""
    calibration = folded(clips(seed + 100))
    if layout == "openmmlab":
        ref = trm.randomize(trm.MMRecognizer(FRAMES, classes, shift), seed, calibration)
        return ref, ref.state_dict()
    ref = trm.randomize(trm.MITTSN(FRAMES, classes, shift), seed, calibration)
    return ref, ref.release_state_dict()


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def tsm_model():
    return TSMMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES,
                          classifier_activation=None)


@pytest.mark.parametrize("layout,seed", [("openmmlab", 1), ("authors", 2)])
def test_converted_tsm_mobilenetv2_matches_pytorch(layout, seed, tsm_model, tmp_path):
    # One Keras model for both layouts, different weights per layout: the second load must
    # overwrite every variable. MIT releases (2019) use the legacy serialisation.
    ref, state = reference(layout, seed)
    path = save(state, tmp_path / f"{layout}.pth", legacy=(layout == "authors"))
    load_weights(tsm_model, path, verbose=False)
    x = clips()
    want = torch_logits(ref, x)
    got = keras_logits(tsm_model, x)
    err = np.abs(got - want).max()
    print(f"TSM-MobileNetV2 {layout}: max |keras - torch| = {err:.2e}, "
          f"max |logit| = {np.abs(want).max():.3f}")
    assert err < TOL, (layout, err)
    # The comparison can fail: clips give distinct logits, and reversing time changes the
    # reference's output (the shift is active) by far more than the tolerance.
    assert np.abs(want[0] - want[1]).max() > 100 * TOL
    reversed_time = torch_logits(ref, x[:, ::-1].copy())
    assert np.abs(reversed_time - want).max() > 100 * TOL
    if layout == "authors":
        # The MIT test script also accepts the head as base_model.classifier.*.
        renamed = {k.replace("module.new_fc.", "module.base_model.classifier."): v
                   for k, v in state.items()}
        load_weights(tsm_model, save(renamed, tmp_path / "classifier.pth"), verbose=False)
        assert np.abs(keras_logits(tsm_model, x) - want).max() < TOL


@pytest.mark.parametrize("layout", ["openmmlab", "authors"])
def test_reference_shifts_the_published_blocks(layout):
    """Both publishers shift the 10 residual blocks with an expansion conv (our 2, 4, 5, 7,
    8, 9, 11, 12, 14, 15); the converter reads that from the .net wrappers."""
    _, state = reference(layout, 0)
    _, found, temporal, shifted = layouts_mobilenet.canonicalize(state)
    assert (found, temporal) == (layout, "tsm")
    assert tuple(shifted) == layouts_mobilenet.SHIFTED_BLOCKS == (2, 4, 5, 7, 8, 9, 11, 12, 14, 15)
    model_shifts = [layer.name for layer in TSMMobileNetV2(
        frames=FRAMES, input_shape=SHAPE, classes=CLASSES)._flatten_layers(include_self=False)
        if layer.name.endswith("_tsm")]
    assert model_shifts == [f"block{i}_tsm" for i in shifted]


def test_torchvision_backbone_initialises_tsn_and_tsm(tmp_path, capsys):
    """A torchvision ImageNet mobilenet_v2 state dict loads as a backbone: with its head into
    a TSN model (frame-averaged image logits), without it (other class count) into TSM."""
    ref = trm.randomize(trm.TorchvisionMobileNetV2(CLASSES), 4, folded(clips(104)))
    path = str(tmp_path / "mobilenet_v2-tv.pth")
    torch.save(ref.state_dict(), path)
    x = clips(3)
    want = torch_logits(ref, x).reshape(CLIPS, FRAMES, CLASSES).mean(1)
    tsn = TSNMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES,
                         classifier_activation=None)
    load_weights(tsn, path, verbose=False)
    err = np.abs(keras_logits(tsn, x) - want).max()
    print(f"TSN-MobileNetV2 torchvision: max |keras - torch| = {err:.2e}")
    assert err < TOL, err
    tsm = TSMMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=5)
    load_weights(tsm, path)
    assert "head has 7 classes but the model has 5" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(tsm.get_layer("conv_last_bn").moving_variance),
                                  np.asarray(tsn.get_layer("conv_last_bn").moving_variance))


def test_head_with_other_class_count_is_dropped(tmp_path, capsys):
    ref, state = reference("openmmlab", 5, classes=400)
    model = TSMMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES)
    fc_before = np.array(model.get_layer("fc").kernel)
    load_weights(model, save(state, tmp_path / "k400.pth"))
    assert "head has 400 classes but the model has 7" in capsys.readouterr().out
    np.testing.assert_array_equal(np.array(model.get_layer("fc").kernel), fc_before)
    kernel = state["backbone.layer2.1.conv.0.net.conv.weight"].numpy()
    np.testing.assert_array_equal(np.array(model.get_layer("block2_expand").kernel),
                                  kernel.transpose(2, 3, 1, 0))
    dw = state["backbone.layer2.1.conv.1.conv.weight"].numpy()  # [C, 1, 3, 3]
    np.testing.assert_array_equal(np.array(model.get_layer("block2_depthwise").kernel),
                                  dw.transpose(2, 3, 0, 1))


def test_mismatched_models_and_checkpoints_are_refused(tsm_model, tmp_path):
    before = snapshot(tsm_model)
    _, tsm_state = reference("authors", 6)
    tsm_path = save(tsm_state, tmp_path / "tsm.pth")
    # TSM checkpoint into TSN / TIN MobileNetV2.
    tsn = TSNMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES)
    with pytest.raises(ValueError, match="TSM MobileNetV2.*is TSN"):
        load_weights(tsn, tsm_path, verbose=False)
    tin = TINMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES)
    with pytest.raises(ValueError, match="TSM MobileNetV2.*is TIN"):
        load_weights(tin, tsm_path, verbose=False)
    # A TSN checkpoint (no shift wrappers) into the TSM model.
    _, tsn_state = reference("openmmlab", 7, shift=False)
    with pytest.raises(ValueError, match="TSN MobileNetV2.*is TSM"):
        load_weights(tsm_model, save(tsn_state, tmp_path / "tsn.pth"), verbose=False)
    # Shifts in other blocks (shifts have no weights; only the key names tell).
    _, state = reference("openmmlab", 8)
    moved = {k.replace("layer2.1.conv.0.net.", "layer2.1.conv.0.")
             .replace("layer3.0.conv.0.", "layer3.0.conv.0.net."): v for k, v in state.items()}
    with pytest.raises(ValueError, match=r"shifts other blocks.*checkpoint: \[3\].*model: \[2\]"):
        load_weights(tsm_model, save(moved, tmp_path / "moved.pth"), verbose=False)
    # An unknown key is listed; nothing is loaded.
    extra = dict(state)
    extra["backbone.layer4.0.conv.0.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"Unmapped keys: \['backbone\.layer4\.0\.conv\.0\.extra"):
        load_weights(tsm_model, save(extra, tmp_path / "extra.pth"), verbose=False)
    # A missing tensor is listed.
    short = {k: v for k, v in state.items() if not k.startswith("backbone.conv2.bn.")}
    with pytest.raises(ValueError, match=r"does not provide: \['conv_last_bn/gamma'"):
        load_weights(tsm_model, save(short, tmp_path / "short.pth"), verbose=False)
    # Another width (alpha 0.5) is a shape mismatch.
    narrow = TSMMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES, alpha=0.5)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_weights(narrow, tsm_path, verbose=False)
    # The MIT online-demo / tonylins flat layout is refused with an explanation.
    flat = {k[len("module.base_model."):].replace(".net.", "."): v
            for k, v in tsm_state.items() if k.startswith("module.base_model.")}
    with pytest.raises(ValueError, match="online demo"):
        load_weights(tsm_model, save(flat, tmp_path / "flat.pth"), verbose=False)
    for a, b in zip(before, snapshot(tsm_model)):
        np.testing.assert_array_equal(a, b)


def test_resnet_and_mobilenet_checkpoints_do_not_cross(tmp_path):
    import torch_reference as tr
    from keras_tin.applications.temporal_resnet import TemporalResNet

    _, mobilenet_state = reference("openmmlab", 9)
    resnet = TemporalResNet("tsm", 18, frames=FRAMES, input_shape=(FRAMES, 32, 32, 3),
                            classes=CLASSES)
    with pytest.raises(ValueError, match="is a MobileNetV2 but model .* is not"):
        load_weights(resnet, save(mobilenet_state, tmp_path / "mnv2.pth"), verbose=False)
    resnet_state = tr.randomize(tr.Recognizer("tsm", 18, FRAMES, CLASSES)).state_dict()
    model = TSMMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES)
    with pytest.raises(ValueError, match="not a MobileNetV2 one"):
        load_weights(model, save(resnet_state, tmp_path / "r18.pth"), verbose=False)


def test_architecture_names_build_the_matching_model():
    from keras_tin.weights import convert_mobilenet

    assert convert_mobilenet.parse_architecture("tsm_mobilenetv2") == "tsm"
    assert convert_mobilenet.parse_architecture("tsm_resnet50") is None
    model = convert_mobilenet.build_model("tsm_mobilenetv2", frames=FRAMES, input_shape=SHAPE,
                                          classes=CLASSES)
    assert convert_mobilenet.is_mobilenet_model(model)
    assert sum(layer.name.endswith("_tsm") for layer in model._flatten_layers()) == 10
    with pytest.raises(ValueError, match="tsm_mobilenetv2"):
        convert_mobilenet.build_model("tsm_resnet50")


def test_convert_cli_writes_a_mobilenet_checkpoint(tmp_path, capsys):
    """`keras-tin convert --arch tsm_mobilenetv2` (once refused: the command passed the
    ResNet-only non_local argument to every model) writes weights equal to the reference."""
    from keras_tin import cli

    ref, state = reference("openmmlab", 4)
    src = save(state, tmp_path / "mm.pth")
    out = tmp_path / "tsm_mbv2.weights.h5"
    assert cli.main(["convert", src, str(out), "--arch", "tsm_mobilenetv2", "--frames",
                     str(FRAMES)]) == 0, capsys.readouterr().out
    assert f"Wrote {out}" in capsys.readouterr().out
    model = TSMMobileNetV2(frames=FRAMES, input_shape=SHAPE, classes=CLASSES,
                           classifier_activation=None)
    model.load_weights(str(out))
    x = clips()
    assert np.abs(keras_logits(model, x) - torch_logits(ref, x)).max() < TOL
