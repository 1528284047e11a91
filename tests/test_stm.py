"""STM-ResNet (keras_tin/layers/stm.py, STMResNet50): the CSTM's shift initialisation, the CMM's
frame difference and pooling, exact conversion of checkpoints in the first author's layout
(weights/torch_reference_stm.py, an independent PyTorch reference), parameter and MAC counts,
and refusals of mismatched checkpoints."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
import torch_reference_stm as trs  # noqa: E402
from keras_tin.applications import STMResNet50  # noqa: E402
from keras_tin.applications import TSNResNet50  # noqa: E402
from keras_tin.applications import TemporalResNet  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402

FRAMES, SIZE, CLASSES, CLIPS = 4, 64, 7, 2
SMALL = dict(frames=FRAMES, input_shape=(FRAMES, 32, 32, 3), classes=CLASSES, base_filters=16,
             classifier_activation=None)
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4
ADDED_OVER_R50 = 171_108  # ZOO_SPEC.md section 4 [calc]


def clips(size=SIZE, seed=0):
    """Per-clip colours, moving gratings and noise (0-255 RGB), shape (CLIPS, T, s, s, 3)."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    colour = rng.uniform(40, 215, (CLIPS, FRAMES, 1, 1, 3))
    phase = rng.uniform(0, 2 * np.pi, (CLIPS, 1, 1, 1, 1)) + np.linspace(0, 2.0, FRAMES)[
        None, :, None, None, None]
    wave = 60 * np.sin(4 * (np.cos(phase) * xx[..., None] + np.sin(phase) * yy[..., None]))
    noise = rng.normal(0, 12, (CLIPS, FRAMES, size, size, 3))
    return np.clip(colour + wave + noise, 0, 255).astype(np.float32)


def torch_logits(ref, x):
    size = x.shape[2]
    frames = ((x - MEAN) / STD).reshape(-1, size, size, 3).transpose(0, 3, 1, 2)
    with torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(frames))).numpy()


def keras_logits(model, x):
    return np.asarray(model(x, training=False))


def save(state_dict, path):
    torch.save({"state_dict": state_dict, "epoch": 30}, str(path))
    return str(path)


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def layers_of(model, suffix):
    return [layer for layer in model.layers if layer.name.endswith(suffix)]


@pytest.fixture(scope="module")
def small():
    return STMResNet50(**SMALL)


def test_fresh_cstm_is_the_stm_shift(small):
    """Every block's temporal conv starts as the author's pattern: C/4 channels read t-1, the
    last C/4 read t+1, the rest t (the reference's init, transposed to (k, C))."""
    shifts = layers_of(small, "_shift")
    cstm = [layer for layer in shifts if "_mb_" not in layer.name]
    assert len(cstm) == 16
    for layer in cstm:
        kernel = np.asarray(layer.kernel)
        channels = kernel.shape[1]
        want = trs.stm_shift_weight(channels)[:, 0, :].numpy().T
        np.testing.assert_array_equal(kernel, want, err_msg=layer.name)
    # And as behaviour: a ramp over time moves by one frame in the outer quarters.
    layer = small.get_layer("layer1_0_shift")
    channels = layer.kernel.shape[1]
    t = np.arange(1, FRAMES + 1, dtype=np.float32)
    x = np.broadcast_to(t[:, None, None, None], (FRAMES, 2, 2, channels)).copy()
    y = np.asarray(layer(x))[:, 0, 0]
    q = channels // 4
    np.testing.assert_array_equal(y[:, :q], np.broadcast_to(np.r_[0, t[:-1]][:, None],
                                                            (FRAMES, q)))
    np.testing.assert_array_equal(y[:, q:channels - q], x[:, 0, 0, q:channels - q])
    np.testing.assert_array_equal(y[:, channels - q:], np.broadcast_to(
        np.r_[t[1:], 0][:, None], (FRAMES, q)))


def test_cmm_is_zero_at_the_last_frame_and_pooled_in_strided_blocks(small):
    x = clips(32)
    names = ["layer1_0_mb_conv1x1", "layer2_0_mb_conv1x1", "layer2_0_mb_pool",
             "layer2_0_bn2", "layer2_1_mb_conv1x1"]
    probe = keras.Model(small.input, [small.get_layer(n).output for n in names])
    outs = [np.asarray(o) for o in probe(x, training=False)]
    for name, out in zip(names, outs):
        if name.endswith("_bn2"):  # the CSTM side, for the shape below
            continue
        per_clip = out.reshape((CLIPS, FRAMES) + out.shape[1:])
        assert np.all(per_clip[:, -1] == 0), name
        assert np.abs(per_clip[:, :-1]).max() > 1e-3, name
    unpooled, pooled, bn2 = outs[1], outs[2], outs[3]
    n, h, w, c = unpooled.shape
    assert pooled.shape == bn2.shape == (n, h // 2, w // 2, c)
    want = unpooled.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    np.testing.assert_allclose(pooled, want, rtol=0, atol=0)
    # Stride-1 blocks have no pool; a max-pool only where the block has stride 2.
    pools = sorted(layer.name for layer in layers_of(small, "_mb_pool"))
    assert pools == ["layer2_0_mb_pool", "layer3_0_mb_pool", "layer4_0_mb_pool"]


def test_converted_stm_resnet50_matches_pytorch(tmp_path, capsys):
    """The real widths, random weights (CSTM moved off its init, CMM non-zero, non-zero BN
    statistics), loaded through weights=<.pth> in the author's {'state_dict': module.
    base_model.*} layout."""
    ref = trs.randomize(trs.Release(50, FRAMES, CLASSES), seed=1)
    state = ref.state_dict()
    assert state["module.base_model.layer1.0.shift.weight"].shape == (64, 1, 3)
    assert state["module.base_model.layer1.0.mb.shift.weight"].shape == (4, 1, 3, 3)
    assert state["module.base_model.layer4.2.mb.conv1x1.weight"].shape == (512, 32, 1, 1)
    assert "module.base_model.fc.weight" in state
    model = STMResNet50(frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3), classes=CLASSES,
                        classifier_activation=None, weights=save(state, tmp_path / "stm.pth"))
    x = clips()
    want = torch_logits(ref, x)
    got = keras_logits(model, x)
    err = np.abs(got - want).max()
    print(f"STM-ResNet-50: max |keras - torch| = {err:.2e}, max |logit| = "
          f"{np.abs(want).max():.3f}")
    assert err < TOL, err
    # The comparison can fail: clips differ, and time order and the CMM both matter.
    assert np.abs(want[0] - want[1]).max() > 100 * TOL
    assert np.abs(torch_logits(ref, x[:, ::-1].copy()) - want).max() > 100 * TOL
    with torch.no_grad():
        ref.module.base_model.layer3[1].mb.conv1x1.weight.zero_()
    assert np.abs(torch_logits(ref, x) - want).max() > 100 * TOL


def test_bare_stm_state_dict_and_depth_101(tmp_path):
    """Without the TSN/DataParallel prefixes (STM's own state_dict()), on ResNet-101."""
    ref = trs.randomize(trs.STM(101, FRAMES, CLASSES, base_filters=16), seed=2)
    model = TemporalResNet("stm", 101, **SMALL)
    load_weights(model, save(ref.state_dict(), tmp_path / "stm101.pth"), verbose=False)
    x = clips(32)
    want = torch_logits(ref, x).reshape(CLIPS, FRAMES, -1).mean(1)  # per-frame fc, averaged
    err = np.abs(keras_logits(model, x) - want).max()
    assert err < TOL, err


def test_parameter_count_and_macs():
    model = STMResNet50(frames=8, input_shape=(8, 224, 224, 3), classes=400)
    tsn = TSNResNet50(frames=8, input_shape=(8, 224, 224, 3), classes=400)
    ref = trs.STM(50, 8, 400)
    plain = trs.STM(50, 8, 400, stm=False)
    assert trainable(model) == trs.trainable_parameters(ref)
    assert trainable(tsn) == trs.trainable_parameters(plain)
    assert trainable(model) - trainable(tsn) == ADDED_OVER_R50
    # MACs: the added CSTM (3 taps per value) and CMM (1x1 C -> C/16, depthwise 3x3, 1x1
    # C/16 -> C, all at the block input's resolution), recounted from the stage sizes.
    added, side = 0, 56
    for stage, count in enumerate((3, 4, 6, 3)):
        c = 64 * 2 ** stage
        for b in range(count):
            r = c // 16
            added += side * side * (3 * c + c * r + 9 * r + r * c)
            if stage and b == 0:
                side //= 2
    stm_macs, tsn_macs = flops(model), flops(tsn)
    print(f"STM-R50 8x224: {stm_macs / 1e9:.2f} G MACs, TSN-R50 {tsn_macs / 1e9:.2f} G, "
          f"ratio {stm_macs / tsn_macs:.4f}; params {trainable(model):,}")
    assert stm_macs - tsn_macs == 8 * added


def test_torchvision_backbone_initialises_stm(tmp_path, capsys):
    """A plain ImageNet ResNet loads the backbone; the STM modules keep their
    initialisation (announced). With CSTM set to the identity and CMM to zero the model is
    then exactly the ResNet per frame, averaged over time."""
    ref = trs.randomize(trs.STM(50, FRAMES, CLASSES, base_filters=16, stm=False), seed=3)
    model = STMResNet50(**SMALL)
    before = {layer.name: [np.array(w) for w in layer.weights]
              for layer in model.layers if layer.name.endswith(("_shift", "_mb_stage_conv",
                                                                 "_mb_conv1x1"))}
    load_weights(model, save(ref.state_dict(), tmp_path / "resnet50.pth"))
    out = capsys.readouterr().out
    assert "STM-module variables keep their initialisation" in out
    for name, weights in before.items():
        for w, kept in zip(model.get_layer(name).weights, weights):
            np.testing.assert_array_equal(np.asarray(w), kept, err_msg=name)
    for layer in layers_of(model, "_shift"):
        if "_mb_" not in layer.name:
            kernel = np.zeros(layer.kernel.shape, np.float32)
            kernel[1] = 1
            layer.kernel.assign(kernel)
    for layer in layers_of(model, "_mb_conv1x1"):
        layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    x = clips(32)
    want = torch_logits(ref, x).reshape(CLIPS, FRAMES, -1).mean(1)
    assert np.abs(keras_logits(model, x) - want).max() < TOL


def test_refusals(tmp_path):
    stm_ref = trs.randomize(trs.Release(50, FRAMES, CLASSES, base_filters=16), seed=4)
    state = stm_ref.state_dict()
    model = STMResNet50(**SMALL)
    kept = snapshot(model)

    # An STM checkpoint into a TSN model, named both ways.
    tsn = TSNResNet50(**SMALL)
    with pytest.raises(ValueError, match=r"STM-ResNet.*TSN network, not STM.*Nothing was"):
        load_weights(tsn, save(state, tmp_path / "stm.pth"), verbose=False)
    # A TSN video checkpoint (the same wrapper without STM modules) into the STM model.
    plain = {k: v for k, v in state.items() if ".shift." not in k and ".mb." not in k}
    with pytest.raises(ValueError, match=r"STM-ResNet but the checkpoint is a TSN-ResNet "):
        load_weights(model, save(plain, tmp_path / "tsn.pth"), verbose=False)
    # Missing and unexpected keys are listed.
    missing = {k: v for k, v in state.items() if k != "module.base_model.layer2.1.mb.shift.weight"}
    with pytest.raises(ValueError, match=r"does not provide: \['layer2_1_mb_shift/kernel'\]"):
        load_weights(model, save(missing, tmp_path / "missing.pth"), verbose=False)
    extra = dict(state)
    extra["module.base_model.layer2.1.mb.extra.weight"] = state[
        "module.base_model.layer2.1.mb.conv1x1.weight"]
    with pytest.raises(ValueError, match=r"Unmapped keys: \['module\.base_model\.layer2\.1\.mb"
                                         r"\.extra\.weight'\]"):
        load_weights(model, save(extra, tmp_path / "extra.pth"), verbose=False)
    # A temporal kernel of another size: the shape mismatch is listed.
    wide = dict(state)
    wide["module.base_model.layer1.0.shift.weight"] = torch.zeros(16, 1, 5)
    with pytest.raises(ValueError, match=r"shape mismatches \(checkpoint -> model\): "
                                         r"\['layer1_0_shift:weight \(16, 5\) -> "
                                         r"layer1_0_shift/kernel \(3, 16\)'\]"):
        load_weights(model, save(wide, tmp_path / "wide.pth"), verbose=False)
    for before, after in zip(kept, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_build_rules():
    model = build_for_architecture("stm_resnet50", frames=2, classes=3,
                                   input_shape=(2, 32, 32, 3), base_filters=16)
    assert model.name == "stm_resnet50"
    assert model.output.shape == (None, 3)
    assert STMResNet50.__name__ == "STMResNet50"
    with pytest.raises(ValueError, match=r"temporal='stm' is defined for depth \(50, 101\)"):
        TemporalResNet("stm", 18, frames=2, input_shape=(2, 32, 32, 3))
    with pytest.raises(ValueError, match=r"at least 16 channels.*base_filters"):
        STMResNet50(frames=2, input_shape=(2, 32, 32, 3), base_filters=8)
    # 200 px: layer3's first block sees a 25 x 25 map, which the CMM's 2x2 pool cannot match.
    with pytest.raises(ValueError, match=r"layer3_0 has stride 2.*\(25, 25\)"):
        STMResNet50(frames=2, input_shape=(2, 200, 200, 3), base_filters=16)
