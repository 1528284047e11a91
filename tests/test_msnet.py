"""MSNet (MotionSqueeze on TSM-ResNets, keras_tin/layers/motion_squeeze.py): exact conversion
of checkpoints in the authors' layout against an independent PyTorch reference
(weights/torch_reference_msnet.py: correlation by explicit shifted sums), the flow and
confidence maps, the module's placement, ImageNet initialisation, refusals, training,
saving, the JAX backend, the portable correlation, and the motion picture helper.

The soft-argmax centres its Gaussian on the argmax of the correlation, so two nearly equal
maxima could flip between float32 implementations: the parity tests assert that, at every
position with a positive maximum, the reference's largest correlation beats the second by
a margin far above float32 noise (MARGIN) for the clips and weights used here.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
import torch_reference_msnet as trm  # noqa: E402
from keras_tin.applications import MSNetResNet18  # noqa: E402
from keras_tin.applications import MSNetResNet50  # noqa: E402
from keras_tin.applications import TSMResNet50  # noqa: E402
from keras_tin.applications import temporal_modules  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.layers.motion_squeeze import MotionSqueezeFlow  # noqa: E402
from keras_tin.layers.motion_squeeze import flow_layers  # noqa: E402
from keras_tin.layers.motion_squeeze import l2_normalize  # noqa: E402
from keras_tin.ops import correlation  # noqa: E402
from keras_tin.layers.temporal_shift import TemporalShift  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402
from keras_tin.utils.motion_maps import flow_to_rgb  # noqa: E402
from keras_tin.utils.motion_maps import motion_maps  # noqa: E402
from keras_tin.utils.motion_maps import plot_motion_maps  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402
from keras_tin.weights import registry  # noqa: E402

FRAMES, SIZE, CLASSES, CLIPS = 4, 64, 7, 2
SMALL = dict(frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3), classes=CLASSES,
             base_filters=16, classifier_activation=None)
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4
MS_PARAMS = {50: 70_905, 18: 20_985}  # ZOO_SPEC.md section 1 [calc]


def clips(size=SIZE, seed=0, frames=FRAMES, step=8):
    """Random textures (0-255 RGB) translating by `step` pixels per frame (one res3 cell),
    a different direction per clip: (CLIPS, T, s, s, 3)."""
    rng = np.random.RandomState(seed)
    margin = step * frames
    big = rng.uniform(0, 255, (CLIPS, size + 2 * margin, size + 2 * margin, 3))
    out = np.zeros((CLIPS, frames, size, size, 3), np.float32)
    directions = ((1, 0), (0, -1), (1, 1), (-1, 0))
    for c in range(CLIPS):
        dy, dx = directions[(seed + c) % 4]
        for t in range(frames):
            y0, x0 = margin - dy * step * t, margin - dx * step * t
            out[c, t] = big[c, y0:y0 + size, x0:x0 + size]
    return out


def torch_input(x):
    size = x.shape[2]
    frames = ((x - MEAN) / STD).reshape(-1, size, size, 3).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(frames))


def save(state_dict, path):
    torch.save({"state_dict": state_dict, "epoch": 25}, str(path))
    return str(path)


def argmax_margin(want, reduced, frames):
    """(smallest top-1 minus top-2 of the reference's ReLU'd correlation `want` (P, h, w,
    225) over positions whose maximum is positive, max |keras - torch| of the correlation
    volume computed from the Keras model's reduced features (N*T, h, w, 64))."""
    reduced = reduced.reshape(-1, frames, *reduced.shape[1:])
    pre = reduced[:, :-1].reshape(-1, *reduced.shape[2:])
    post = reduced[:, 1:].reshape(-1, *reduced.shape[2:])
    got = np.maximum(np.asarray(correlation(l2_normalize(pre), l2_normalize(post), 7)), 0)
    top = np.sort(want, axis=-1)[..., -2:]
    gap = (top[..., 1] - top[..., 0])[top[..., 1] > 0]
    return float(gap.min()), float(np.abs(got - want).max())


def reference_maps(ref, x):
    with torch.no_grad():
        maps = ref.maps(torch_input(x)).numpy()  # (N*(T-1), 3, h, w)
    return maps.transpose(0, 2, 3, 1).reshape(x.shape[0], x.shape[1] - 1, *maps.shape[2:], 3)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("depth,clip_seed", [(50, 1), (18, 0)])
def test_converted_msnet_matches_pytorch(depth, clip_seed, tmp_path):
    """The real widths, random weights and non-zero BN statistics everywhere (the MS
    module's included), loaded through weights=<.pth> in the authors' {'state_dict':
    module.base_model.*, module.new_fc.*} layout: logits, flow and confidence maps."""
    ref = trm.randomize(trm.Release(depth, FRAMES, CLASSES), seed=depth)
    state = ref.state_dict()
    assert state["module.base_model.chnl_reduction.0.weight"].shape == (
        64, 128 * (4 if depth == 50 else 1), 1, 1)
    assert state["module.base_model.flow_refinement.conv1.0.weight"].shape == (3, 1, 7, 7)
    assert state["module.new_fc.weight"].shape == (CLASSES, 512 * (4 if depth == 50 else 1), 1)
    assert "module.base_model.bn2.running_mean" in state  # the authors' unused BN
    build = MSNetResNet50 if depth == 50 else MSNetResNet18
    model = build(frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3), classes=CLASSES,
                  classifier_activation=None, weights=save(state, tmp_path / "ms.pth"))
    x = clips(seed=clip_seed)
    flow = model.get_layer("layer2_ms_flow")
    probe = keras.Model(model.input, [model.output, flow.input, flow.output])
    got, reduced, maps = (np.asarray(t) for t in probe(x, training=False))
    maps_got = maps.reshape(CLIPS, FRAMES, *maps.shape[1:])[:, :-1]
    with torch.no_grad():
        xt = torch_input(x)
        want = ref(xt).numpy()
        corr_want = ref.correlation_volume(xt).numpy().transpose(0, 2, 3, 1)
    maps_want = reference_maps(ref, x)
    # Random-weight features are nearly parallel (top correlations ~0.97-0.996), so the
    # largest correlations are close: the argmax cannot flip between the two
    # implementations only if the top-1 / top-2 gap exceeds twice their largest
    # difference; require 10 times.
    margin, corr_err = argmax_margin(corr_want, reduced, FRAMES)
    assert margin > 10 * corr_err, f"near-tie of the argmax: {margin:.2e} vs {corr_err:.2e}"
    err = np.abs(got - want).max()
    maps_err = np.abs(maps_got - maps_want).max()
    print(f"MSNet-ResNet-{depth}: max |keras - torch| logits {err:.2e} (max |logit| "
          f"{np.abs(want).max():.3f}), maps {maps_err:.2e}, correlation {corr_err:.1e}; "
          f"argmax margin {margin:.1e}")
    assert err < TOL, err
    assert maps_err < TOL, maps_err
    assert maps_got.shape == (CLIPS, FRAMES - 1, SIZE // 8, SIZE // 8, 3)
    # The comparison can fail: the flow is not constant, time order and the module matter.
    assert maps_want[..., 0].std() > 0.01 and np.ptp(maps_want[..., 2]) > 1e-3
    assert np.abs(want[0] - want[1]).max() > 10 * TOL
    with torch.no_grad():
        reversed_logits = ref(torch_input(x[:, ::-1].copy())).numpy()
        ref.module.base_model.flow_refinement.conv4[4].weight.mul_(3.0)
        stronger = ref(torch_input(x)).numpy()
    assert np.abs(reversed_logits - want).max() > 10 * TOL
    assert np.abs(stronger - want).max() > 10 * TOL


def test_placement_tsm_in_every_block_and_ms_after_res3_only():
    spec = temporal_modules.get("msnet")
    assert spec.placements == ("before_conv1", "after_stage")
    model = MSNetResNet18(**SMALL)
    flows = [layer for layer in model.layers if isinstance(layer, MotionSqueezeFlow)]
    assert [layer.name for layer in flows] == ["layer2_ms_flow"]
    ms_layers = [layer.name for layer in model.layers if "_ms_" in layer.name]
    assert all(name.startswith("layer2_ms_") for name in ms_layers)
    # The add takes layer2's last block output; layer3's first block reads the add.
    add = model.get_layer("layer2_ms_out")
    assert {t._keras_history[0].name for t in add.input} >= {"layer2_1_out"}
    consumers = {node.operation.name for node in add._outbound_nodes}
    assert "layer3_0_conv1" in consumers or "layer3_0_downsample_conv" in consumers
    assert "layer2_ms_reduce" in {node.operation.name
                                  for node in model.get_layer("layer2_1_out")._outbound_nodes}
    # TSM's shift before conv1 of all 8 blocks (fused into conv1), none elsewhere.
    shifts = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, TemporalShift)]
    assert sorted(layer.name for layer in shifts) == sorted(
        f"layer{s}_{b}_tsm" for s in range(1, 5) for b in range(2))
    # R50: the same, res3 = 512 channels.
    assert build_for_architecture("msnet_resnet50", **SMALL).get_layer(
        "layer2_ms_reduce").input.shape[-1] == 16 * 2 * 4


def test_parameters_and_macs():
    for depth, build in ((50, MSNetResNet50), (18, MSNetResNet18)):
        size = 224 if depth == 50 else 64  # parameters do not depend on the input size
        model = build(frames=8, input_shape=(8, size, size, 3), classes=174)
        ms = sum(int(np.prod(w.shape)) for w in model.trainable_weights if "_ms_" in w.path)
        assert ms == MS_PARAMS[depth]
        # the reference also holds the authors' unused BatchNorm2d(128): 256 parameters
        assert trainable(model) == trm.trainable_parameters(trm.MSResNet(depth, 8, 174)) - 256
        if depth == 50:
            ms50 = model
    tsm = TSMResNet50(frames=8, input_shape=(8, 224, 224, 3), classes=174)
    added = flops(ms50) - flops(tsm)
    # per frame at 28x28: reduce 512*64, correlation 225*64 for 7 of 8 frames, DW 3*49 +
    # 3*16, 16*9 + 16*32, 32*9 + 32*64, 64*9 + 64*512
    per_position = (512 * 64 + 225 * 64 * 7 / 8 + 3 * 49 + 3 * 16 + 16 * 9 + 16 * 32
                    + 32 * 9 + 32 * 64 + 64 * 9 + 64 * 512)
    assert added == pytest.approx(8 * 28 * 28 * per_position, rel=1e-9)


def test_imagenet_record_initialises_the_backbone(tmp_path, monkeypatch, capsys):
    """weights="resnet50_imagenet_torchvision" (download replaced by a torchvision-layout
    file): the backbone loads, the MS module keeps its initialisation; with the refinement's
    last BN zeroed the network is then exactly the TSM-ResNet on the same backbone."""
    plain = trm.randomize(trm.MSResNet(50, FRAMES, 1000, 16, flow=False), seed=3)
    path = save(trm.torchvision_state_dict(plain), tmp_path / "resnet50.pth")
    monkeypatch.setattr(registry, "download", lambda name, **kwargs: path)
    keras.utils.set_random_seed(1)
    model = MSNetResNet50(**SMALL)
    before = {w.path: np.array(w) for w in model.weights if "_ms_" in w.path}
    load_weights(model, "resnet50_imagenet_torchvision")
    out = capsys.readouterr().out
    assert "MotionSqueeze-module variables keep their initialisation" in out
    for w in model.weights:
        if "_ms_" in w.path:
            np.testing.assert_array_equal(np.array(w), before[w.path], err_msg=w.path)
    np.testing.assert_array_equal(
        np.array(model.get_layer("conv1").kernel),
        plain.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    bn = model.get_layer("layer2_ms_refine4_pw_bn")
    bn.gamma.assign(np.zeros(bn.gamma.shape, np.float32))
    bn.beta.assign(np.zeros(bn.beta.shape, np.float32))
    x = clips()
    fc = keras.Model(model.input, model.get_layer("fc").input)
    got = np.asarray(fc(x, training=False)).reshape(-1, FRAMES, 16 * 32)
    with torch.no_grad():
        feats = plain.features(torch_input(x)).numpy().reshape(-1, FRAMES, 16 * 32)
    assert np.abs(got - feats).max() < TOL


def test_refusals(tmp_path):
    ref = trm.randomize(trm.Release(18, FRAMES, CLASSES, 16), seed=4)
    state = ref.state_dict()
    tsm = build_for_architecture("tsm_resnet18", **SMALL)
    with pytest.raises(ValueError, match=r"MSNet.*TSM network, not MSNet.*Nothing was"):
        load_weights(tsm, save(state, tmp_path / "ms.pth"), verbose=False)
    model = MSNetResNet18(**SMALL)
    kept = [np.array(w) for w in model.weights]
    plain = {k: v for k, v in state.items()
             if "chnl_reduction" not in k and "flow_refinement" not in k}
    with pytest.raises(ValueError, match=r"is an MSNet but the checkpoint is not an MSNet"):
        load_weights(model, save(plain, tmp_path / "tsn.pth"), verbose=False)
    missing = {k: v for k, v in state.items()
               if k != "module.base_model.flow_refinement.conv2.3.weight"}
    with pytest.raises(ValueError, match=r"does not provide: \['layer2_ms_refine2_pw/kernel'\]"):
        load_weights(model, save(missing, tmp_path / "missing.pth"), verbose=False)
    wide = dict(state)
    wide["module.base_model.flow_refinement.conv1.0.weight"] = torch.zeros(3, 1, 5, 5)
    with pytest.raises(ValueError, match=r"shape mismatches.*layer2_ms_refine1_dw"):
        load_weights(model, save(wide, tmp_path / "wide.pth"), verbose=False)
    for before, after in zip(kept, model.weights):
        np.testing.assert_array_equal(before, np.array(after))
    with pytest.raises(ValueError, match=r"frames >= 2. Received: frames=1"):
        MotionSqueezeFlow(1)


def test_flow_sign_on_translating_features_and_picture(tmp_path):
    """Features of frame t+1 = frame t moved right by 2 and down by 1 cells: the flow
    points right (+x) and down (+y) in the interior; the PNG has the expected size."""
    rng = np.random.RandomState(0)
    h = w = 16
    f0 = rng.normal(size=(h + 8, w + 8, 32)).astype(np.float32)
    f1 = np.roll(f0, (1, 2), axis=(0, 1))
    clip = np.stack([f0[4:4 + h, 4:4 + w], f1[4:4 + h, 4:4 + w],
                     np.roll(f1, (1, 2), axis=(0, 1))[4:4 + h, 4:4 + w]])
    maps = np.asarray(MotionSqueezeFlow(3, return_pairs=True)(clip))  # (2, h, w, 3)
    inner = maps[:, 4:-4, 4:-4]
    assert np.all(inner[..., 0] > 0.25) and np.all(inner[..., 0] < 0.32)  # ~2/7
    assert np.all(inner[..., 1] > 0.1) and np.all(inner[..., 1] < 0.17)  # ~1/7
    assert np.all(inner[..., 2] > 0.99)  # unit vectors matched exactly: cosine 1
    full = np.asarray(MotionSqueezeFlow(3)(clip))
    np.testing.assert_array_equal(full[2], full[1])  # the last pair repeated
    # Colour wheel: right is red, left is cyan.
    rgb = flow_to_rgb(np.array([[1.0, -1.0]]), np.array([[0.0, 0.0]]))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 1]) == (0, 255, 255)
    frames = rng.uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    path = plot_motion_maps(frames, maps, str(tmp_path / "flow.png"), title="test", dpi=50)
    from PIL import Image
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (int(7.5 * 50), int(2.5 * 2 * 50))
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # not blank
    with pytest.raises(ValueError, match=r"maps \(frames - 1"):
        plot_motion_maps(frames, maps[:1], str(tmp_path / "bad.png"))


def test_fit_round_trip_portable_equals_auto(tmp_path):
    keras.utils.set_random_seed(0)
    small = dict(SMALL, input_shape=(FRAMES, 32, 32, 3))
    model = MSNetResNet18(**small)
    x = clips(32)
    assert model.get_layer("layer2_ms_flow").implementation == "auto"
    assert MSNetResNet18(implementation="portable", **small).get_layer(
        "layer2_ms_flow").implementation == "portable"
    auto = np.asarray(model(x, training=False))  # the compiled op where it is loaded
    model.get_layer("layer2_ms_flow").implementation = "portable"
    np.testing.assert_allclose(np.asarray(model(x, training=False)), auto, atol=1e-5)
    model.get_layer("layer2_ms_flow").implementation = "auto"
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ms = [v for v in model.trainable_weights if "_ms_" in v.path]
    before = [np.array(v) for v in ms]
    history = model.fit(x, np.array([1, 5]), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    static = [v.path for b, v in zip(before, ms) if np.array_equal(b, np.array(v))]
    assert not static, f"MS variables that did not move: {static}"
    path = str(tmp_path / "msnet.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(reloaded(x, training=False)),
                               np.asarray(model(x, training=False)), atol=1e-6)
    maps = motion_maps(reloaded, x)
    assert maps.shape == (CLIPS, FRAMES - 1, 4, 4, 3)
    np.testing.assert_allclose(maps[0], motion_maps(model, x[0]), atol=1e-6)


JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from keras_tin.layers.motion_squeeze import MotionSqueezeFlow
    job = json.loads(sys.argv[1])
    assert keras.backend.backend() == "jax"
    inputs = keras.Input(tuple(job["shape"]), batch_size=job["batch"])
    model = keras.Model(inputs, MotionSqueezeFlow(job["frames"])(inputs))
    np.save(job["out"], model.predict(np.load(job["x"]), batch_size=job["batch"], verbose=0))
    print("OK")
""")


def test_jax_backend_equals_tensorflow(tmp_path):
    """The MotionSqueeze flow layer (normalisation, correlation, Gaussian soft-argmax,
    confidence) on the JAX backend; the rest of the module is standard Keras layers."""
    shape, batch = (8, 8, 32), CLIPS * FRAMES
    rng = np.random.RandomState(3)
    base = np.maximum(rng.normal(size=(CLIPS, 12, 12, 32)), 0)  # ReLU'd-like features
    x = np.stack([np.roll(base, (t, -t), axis=(1, 2))[:, 2:10, 2:10] for t in range(FRAMES)],
                 axis=1).reshape((batch,) + shape).astype(np.float32)
    x += 0.05 * rng.normal(size=x.shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    job = dict(frames=FRAMES, shape=list(shape), batch=batch, x=str(tmp_path / "x.npy"),
               out=str(tmp_path / "jax.npy"))
    script = tmp_path / "jax_check.py"
    script.write_text(JAX_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), json.dumps(job)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = np.asarray(MotionSqueezeFlow(FRAMES)(x))
    assert expected[..., 0].std() > 0.05 and expected[..., 1].std() > 0.05
    np.testing.assert_allclose(np.load(job["out"]), expected, atol=TOL, rtol=0)


def test_demo_takes_msnet_and_space_separated_models():
    from keras_tin.cli import main

    assert "msnet" in temporal_modules.names()
    with pytest.raises(SystemExit, match=r"Received: 'tsn msnet tcn' \(unknown: tcn\)"):
        main(["demo", "--models", "tsn", "msnet", "tcn"])


def test_train_cli_builds_msnet(tmp_path, capsys):
    import training_layouts
    from keras_tin.cli import main

    videos = training_layouts.three_class_videos(str(tmp_path / "videos"))
    out = tmp_path / "run"
    code = main(["train", "--dataset", "folder", "--root", videos, "--output-dir", str(out),
                 "--arch", "msnet_resnet18", "--base-filters", "16", "--image-size", "64",
                 "--frames", "4", "--epochs", "1", "--batch-size", "2", "--val-split", "",
                 "--verbose", "0"])
    assert code == 0, capsys.readouterr()
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.name == "msnet_resnet18"
    assert [layer.name for layer in flow_layers(model)] == ["layer2_ms_flow"]
    assert json.loads((out / "config.json").read_text())["arch"] == "msnet_resnet18"


def test_tflite_float_equals_keras(tmp_path):
    """Builtin TFLite ops only (the argmax is a min over indices reaching the maximum)."""
    from keras_tin.export import TFLiteModel
    from keras_tin.export import export_tflite

    keras.utils.set_random_seed(0)
    model = MSNetResNet18(**SMALL)
    x = clips(seed=2)
    expected = np.asarray(model(x, training=False))
    path = str(tmp_path / "msnet.tflite")
    export_tflite(model, path)
    got = np.concatenate([TFLiteModel(path)(clip[None]) for clip in x])
    np.testing.assert_allclose(got, expected, rtol=0,
                               atol=TOL * max(1.0, float(np.abs(expected).max())))
