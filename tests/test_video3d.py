"""The 3D / (2+1)D video ResNets (keras_tin.applications.video3d.resnet3d).

Oracles: torchvision's own r2plus1d_18 / r3d_18 / mc3_18 (torchvision 0.28.0, the test
extra) and, for R(2+1)D-34, the independent references of weights/torch_reference_video3d.py
in the mmaction2 and VMZ / ig65m-pytorch module layouts. Random weights, non-zero BN
statistics; logits within 1e-4 after converting the PyTorch state dict with keras_tin's
converter. Plus what every zoo model must do (fit, .keras, JAX / torch backends, TFLite,
`keras-tin train --arch`) on narrow networks (base_filters 8, 4 frames, 32 px).
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import torch

from export_helpers import clips
from export_helpers import recalibrate_batchnorm

import training_layouts
from keras_tin import architectures
from keras_tin import cli
from keras_tin.applications import MC3_18
from keras_tin.applications import R2Plus1D18
from keras_tin.applications import R2Plus1D34
from keras_tin.applications import R3D18
from keras_tin.applications.records import build_for_architecture
from keras_tin.applications.video3d import blocks3d
from keras_tin.applications.video3d import resnet3d
from keras_tin.export import TFLiteModel
from keras_tin.export import export_tflite
from keras_tin.utils.flops import flops
from keras_tin.weights import convert

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "weights"))
import torch_reference_video3d as reference  # noqa: E402

FRAMES, SIZE = 4, 32


def torchvision_video():
    """torchvision.models.video.resnet. Its compiled ops do not register with the CPU torch
    build of this environment; the video ResNets need none of them, so register_fake is a
    no-op while torchvision is imported (test helper only; restored afterwards)."""
    original = torch.library.register_fake
    torch.library.register_fake = lambda *args, **kwargs: (lambda fn: fn)
    try:
        from torchvision.models.video import resnet
    finally:
        torch.library.register_fake = original
    return resnet


def randomize_batchnorm(net, seed=0):
    return reference.randomize_batchnorm(net, seed)


def state_dict(net):
    return {key: value.detach().numpy() for key, value in net.state_dict().items()}


def torch_logits(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(0, 4, 1, 2, 3))).numpy()


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_middle_width_is_torchvision_s():
    # torchvision BasicBlock: (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)
    assert blocks3d.middle_width(64, 64) == 144
    assert [blocks3d.middle_width(i, o) for i, o in ((64, 128), (128, 256), (256, 512))] == \
        [230, 460, 921]
    assert [blocks3d.middle_width(o, o) for o in (128, 256, 512)] == [288, 576, 1152]
    assert blocks3d.middle_width(3, 64, (3, 7, 7)) == 83  # mmaction2's stem
    assert blocks3d.middle_width(64, 128, (3, 1, 1)) == 54  # mmaction2's 1x1x1 shortcut


# name -> (torchvision builder, ours, torchvision's num_params (400 classes))
TORCHVISION = {"r2plus1d_18": ("r2plus1d_18", R2Plus1D18, 31_505_325),
               "r3d_18": ("r3d_18", R3D18, 33_371_472),
               "mc3_18": ("mc3_18", MC3_18, 11_695_440)}


@pytest.mark.parametrize("arch", sorted(TORCHVISION))
def test_torchvision_parity_and_parameter_count(arch, tmp_path, monkeypatch):
    """Full-size network, 400 classes: the trainable parameters equal torchvision's
    num_params, and torchvision's state dict converted by keras_tin gives its logits on
    4-frame 32-px clips (MC3-18 loads through weights=<.pth>)."""
    tv_name, ours, published = TORCHVISION[arch]
    torch.manual_seed(0)
    net = randomize_batchnorm(getattr(torchvision_video(), tv_name)()).eval()
    assert sum(p.numel() for p in net.parameters()) == published
    if arch == "mc3_18":
        path = str(tmp_path / "mc3_18.pth")
        torch.save(net.state_dict(), path)
        model = ours(frames=FRAMES, input_shape=(SIZE, SIZE, 3), weights=path,
                     classifier_activation=None, normalization=None)
    else:
        model = ours(frames=FRAMES, input_shape=(SIZE, SIZE, 3), classifier_activation=None,
                     normalization=None)
        info = convert.assign_state_dict(model, state_dict(net), verbose=False)
        assert info == {"layout": "torchvision_video", "temporal": "video3d",
                        "head_loaded": True}
    assert trainable_count(model) == published
    assert architectures.parse(arch).build_function() is ours
    x = np.random.default_rng(1).normal(size=(2, FRAMES, SIZE, SIZE, 3)).astype("float32")
    expected = torch_logits(net, x)
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, atol=1e-4, rtol=0)
    if arch == "mc3_18":  # the manifest record: its layout, and its normalisation in the model
        from keras_tin.weights import registry
        monkeypatch.setattr(registry, "download", lambda name, **kwargs: path)
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            named = ours(frames=FRAMES, input_shape=(SIZE, SIZE, 3),
                         weights="mc3_18_16f_kinetics400_torchvision",
                         classifier_activation=None)
        assert [str(w.message) for w in caught if "normalised as" in str(w.message)] == []
        assert any("trained with 16 frames" in str(w.message) for w in caught)
        raw = np.random.default_rng(3).uniform(0, 255, x.shape).astype("float32")
        mean = np.array([0.43216, 0.394666, 0.37645]) * 255
        std = np.array([0.22803, 0.22145, 0.216989]) * 255
        normalised = ((raw - mean) / std).astype("float32")
        np.testing.assert_allclose(named(raw, training=False).numpy(),
                                   torch_logits(net, normalised), atol=1e-4, rtol=0)
    if arch == "r2plus1d_18":  # one middle width per block: 230 / 460 / 921 in conv2 too
        widths = [model.get_layer(f"layer{s}_0_conv{k}_s").filters
                  for s in (2, 3, 4) for k in (1, 2)]
        assert widths == [230, 230, 460, 460, 921, 921]
        assert model.get_layer("layer2_1_conv1_s").filters == 288


# variant -> (reference class, published-count source)
VARIANTS = {"mmaction2": (reference.MMAction2R2Plus1D34, 63_759_281),
            "vmz": (reference.VMZR2Plus1D34, 63_697_175)}


SHORT = (1, 2, 1, 1)  # blocks per stage of the parity networks (34 layers: 3, 4, 6, 3)


def test_r2plus1d_34_mmaction2_parameter_count():
    """mmaction2's metafile: 63.8M parameters (full size, 400 classes)."""
    cls, count = VARIANTS["mmaction2"]
    assert round(count / 1e6, 1) == 63.8
    assert trainable_count(R2Plus1D34(variant="mmaction2", input_shape=(SIZE, SIZE, 3))) == count


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_r2plus1d_34_variants_match_their_references(variant):
    """Stages of 1, 2, 1, 1 blocks at full width (the per-block rules are the same at any
    depth): the parameter count is the reference's, the publisher's state dict loads,
    logits within 1e-4; BN eps as published (mmaction2: 1e-3 outside, 1e-5 inside its
    Conv2plus1d; VMZ: 1e-3)."""
    cls, _ = VARIANTS[variant]
    torch.manual_seed(0)
    net = randomize_batchnorm(cls(layers=SHORT)).eval()
    spec = dataclasses.replace(resnet3d.SPECS[resnet3d.R2PLUS1D_34_VARIANTS[variant]],
                               blocks=SHORT)
    model = resnet3d.VideoResNet(spec, frames=FRAMES, input_shape=(SIZE, SIZE, 3),
                                 classifier_activation=None, normalization=None)
    assert trainable_count(model) == sum(p.numel() for p in net.parameters())
    layout = {"mmaction2": "mmaction2_r2plus1d", "vmz": "vmz"}[variant]  # the records'
    info = convert.assign_state_dict(model, state_dict(net), layout=layout, verbose=False)
    assert info["layout"] == layout
    x = np.random.default_rng(2).normal(size=(2, FRAMES, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False).numpy(), torch_logits(net, x),
                               atol=1e-4, rtol=0)
    inner = 1e-5 if variant == "mmaction2" else 1e-3
    assert model.get_layer("stem_bn").epsilon == 1e-3
    assert model.get_layer("layer2_1_bn2").epsilon == 1e-3
    assert model.get_layer("layer2_1_bn2_s").epsilon == inner
    assert model.get_layer("layer2_0_conv2_s").filters == 288  # per conv, not per block
    if variant == "mmaction2":
        assert model.get_layer("layer2_0_downsample_conv_s").filters == 54


def short(spec_name, **kwargs):
    """A narrow (base_filters 8), shallow (a block per stage) network of a spec."""
    spec = dataclasses.replace(resnet3d.SPECS[spec_name], blocks=(1, 1, 1, 1))
    return resnet3d.VideoResNet(spec, base_filters=8, **kwargs)


def tiny(spec_name, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = short(spec_name, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3), classes=3,
                  **kwargs)
    return recalibrate_batchnorm(model, clips(16, FRAMES, SIZE, seed=100))


def test_converter_refuses_other_families_and_mismatches():
    torch.manual_seed(0)
    vision = torchvision_video()
    r3d = state_dict(vision.r3d_18(num_classes=3))
    model = R2Plus1D18(frames=FRAMES, input_shape=(SIZE, SIZE, 3), classes=3)
    with pytest.raises(ValueError, match=r"nothing was loaded.*(no matching|shape mismatch)"):
        convert.assign_state_dict(model, r3d, verbose=False)
    tsn = build_for_architecture("tsn_resnet18", frames=FRAMES,
                                 input_shape=(FRAMES, SIZE, SIZE, 3), classes=3, base_filters=8)
    with pytest.raises(ValueError, match=r"video ResNet \(torchvision_video layout.*"
                                         r"not a keras_tin video ResNet.*r2plus1d_18"):
        convert.assign_state_dict(tsn, r3d, verbose=False)
    image = {"conv1.weight": np.zeros((64, 3, 7, 7), "float32"),
             "layer1.0.conv1.weight": np.zeros((64, 64, 3, 3), "float32")}
    with pytest.raises(ValueError, match=r"not in a video-ResNet layout.*conv1\.weight"):
        convert.assign_state_dict(model, image, verbose=False)
    mm = state_dict(reference.MMAction2R2Plus1D34(classes=3, layers=(1, 1, 1, 1)))
    vmz = R2Plus1D34(frames=FRAMES, input_shape=(SIZE, SIZE, 3), variant="vmz", classes=3,
                     base_filters=8)
    with pytest.raises(ValueError, match="mmaction2_r2plus1d-layout checkpoint"):
        convert.assign_state_dict(vmz, mm, verbose=False)
    with pytest.raises(ValueError, match=r"variant must be one of \['mmaction2', 'vmz'\]. "
                                         r"Received: variant='caffe2'"):
        R2Plus1D34(variant="caffe2")


@pytest.mark.parametrize("kernel,strides,padding", [
    ((1, 3, 3), (1, 2, 2), "valid"), ((1, 3, 3), (2, 2, 2), "same"),
    ((3, 1, 1), (1, 1, 1), "same"), ((3, 1, 1), (2, 1, 1), "valid"),
    ((3, 1, 1), (2, 1, 1), "same"), ((1, 1, 1), (2, 2, 2), "valid"),
    ((3, 3, 3), (1, 2, 2), "same")])
def test_planar_conv3d_equals_conv3d(kernel, strides, padding):
    from keras_tin.layers import PlanarConv3D

    x = np.random.default_rng(0).normal(size=(2, 5, 9, 7, 4)).astype("float32")
    conv = keras.layers.Conv3D(6, kernel, strides, padding=padding, use_bias=True,
                               bias_initializer="random_normal")
    expected = conv(x).numpy()
    planar = PlanarConv3D(6, kernel, strides, padding=padding, use_bias=True)
    planar.build(x.shape)
    planar.set_weights(conv.get_weights())
    np.testing.assert_allclose(planar(x).numpy(), expected, atol=1e-5, rtol=0)
    assert planar.compute_output_shape(x.shape) == expected.shape


def test_flops_counts_conv3d_per_clip():
    """torchvision's weight enums: 40.519 / 40.697 / 43.343 GFLOPs (multiply-adds) per
    16 x 112 x 112 clip."""
    keras.utils.set_random_seed(0)
    counts = {name: round(flops(fn()) / 1e9, 3)
              for name, fn in (("r2plus1d_18", R2Plus1D18), ("r3d_18", R3D18),
                               ("mc3_18", MC3_18))}
    assert counts == {"r2plus1d_18": 40.519, "r3d_18": 40.697, "mc3_18": 43.343}


def test_fit_keras_round_trip_and_tflite(tmp_path):
    model = tiny("r2plus1d_18", name="r2plus1d_18")
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x = clips(4, FRAMES, SIZE, seed=1)
    before = [v.numpy().copy() for v in model.trainable_weights]
    history = model.fit(x, np.array([0, 1, 2, 1]), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    static = [v.path for b, v in zip(before, model.trainable_weights)
              if np.array_equal(b, v.numpy())]
    assert not static, static
    path = str(tmp_path / "r2plus1d_18.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)

    logits = tiny("r2plus1d_18", classifier_activation=None)
    evals = clips(3, FRAMES, SIZE, seed=7)
    expected = logits(evals, training=False).numpy()
    flat = str(tmp_path / "float.tflite")
    export_tflite(logits, flat)
    got = np.concatenate([TFLiteModel(flat)(clip[None]) for clip in evals])
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1, np.abs(expected).max()),
                               rtol=0)
    int8 = str(tmp_path / "int8.tflite")
    export_tflite(logits, int8, quantize="int8",
                  representative_dataset=clips(8, FRAMES, SIZE, seed=3))
    out = np.concatenate([TFLiteModel(int8)(clip[None]) for clip in evals])
    assert out.shape == expected.shape and np.isfinite(out).all() and np.ptp(out) > 0
    # PlanarConv3D: every (2+1)D conv is an int8 CONV_2D (TFLite's CONV_3D is float only)
    from ai_edge_litert.interpreter import Interpreter
    ops_ = Interpreter(int8)._get_ops_details()
    names = [op["op_name"] for op in ops_]
    assert "CONV_3D" not in names and names.count("CONV_2D") >= 10, names


BACKEND_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import keras
    import dataclasses
    from keras_tin.applications.video3d import resnet3d

    def short(name, **kwargs):  # as test_video3d.short
        spec = dataclasses.replace(resnet3d.SPECS[name], blocks=(1, 1, 1, 1))
        return resnet3d.VideoResNet(spec, base_filters=8, **kwargs)

    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    root = sys.argv[1]
    for arch in ("r2plus1d_18",):
        model = short(arch, frames=4, input_shape=(4, 32, 32, 3), classes=3,
                      classifier_activation=None)
        model.load_weights(os.path.join(root, arch + ".weights.h5"))
        x = np.load(os.path.join(root, "clips.npy"))
        out = keras.ops.convert_to_numpy(model(x, training=False))
        np.save(os.path.join(root, arch + "_" + keras.backend.backend() + ".npy"), out)
    if keras.backend.backend() == "torch":  # (JAX: XLA compiles the training step for ~15 s)
        model.compile(keras.optimizers.SGD(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = model.fit(x, np.arange(len(x)) % 3, epochs=1, verbose=0).history["loss"][-1]
        assert np.isfinite(loss)
    print("OK", keras.backend.backend())
""")


def test_same_outputs_on_jax_and_torch_and_training_on_torch(tmp_path):
    """R(2+1)D (Conv3D of (1, k, k), (k, 1, 1) and 1x1x1 kernels, strided and padded) on
    JAX and torch; the JAX subprocess compiles with XLA's cheap CPU optimisation (what is checked is the
    arithmetic, not XLA's speed)."""
    archs = ("r2plus1d_18",)
    models = {arch: tiny(arch, classifier_activation=None) for arch in archs}
    x = clips(2, FRAMES, SIZE, seed=7)
    np.save(tmp_path / "clips.npy", x)
    for arch, model in models.items():
        model.save_weights(str(tmp_path / f"{arch}.weights.h5"))
    script = tmp_path / "backend_check.py"
    script.write_text(BACKEND_SCRIPT)
    fast_xla = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    procs = {backend: subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        env=dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="",
                 XLA_FLAGS=fast_xla),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for backend in ("jax", "torch")}
    for backend, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-4000:]
        for arch, model in models.items():
            expected = model(x, training=False).numpy()
            np.testing.assert_allclose(
                np.load(tmp_path / f"{arch}_{backend}.npy"), expected,
                atol=1e-4 * max(1, np.abs(expected).max()), rtol=0,
                err_msg=f"{arch} on {backend}")


def test_train_cli_defaults_to_dense_sampling(tmp_path, capsys, monkeypatch):
    """`keras-tin train --arch r2plus1d_18` builds R(2+1)D-18 and samples dense clips
    (architectures.DEFAULT_SAMPLING) unless --sampling says otherwise."""
    from keras_tin.training import TrainConfig

    assert TrainConfig(arch="r2plus1d_18").sampling == "dense"
    assert TrainConfig(arch="r2plus1d_18", sampling="segment").sampling == "segment"
    assert TrainConfig(arch="tsm_resnet50").sampling == "segment"
    videos = training_layouts.three_class_videos(str(tmp_path / "videos"))
    # The trainer builds standalone networks at their published size; shrink it here.
    monkeypatch.setattr(resnet3d, "R2Plus1D18", lambda **kwargs: short("r2plus1d_18", **kwargs))
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "folder", "--root", videos, "--output-dir",
                     str(out), "--arch", "r2plus1d_18", "--image-size", "32", "--frames", "4",
                     "--epochs", "1", "--batch-size", "2", "--val-split", "", "--verbose",
                     "0"])
    assert code == 0, capsys.readouterr()
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.name == "r2plus1d_18"
    assert model.get_layer("layer2_0_conv1_s").filters == blocks3d.middle_width(8, 16)
    saved = json.loads((out / "config.json").read_text())
    assert (saved["arch"], saved["sampling"]) == ("r2plus1d_18", "dense")


def test_bad_arguments_quote_the_value():
    with pytest.raises(ValueError, match=r"pooling must be one of .*Received: pooling='sum'"):
        R3D18(include_top=False, pooling="sum")
    with pytest.raises(ValueError, match=r"frames must be a positive integer. Received: "
                                         r"frames=0"):
        MC3_18(frames=0)
    with pytest.raises(ValueError, match=r"spec must be a Spec or one of .*'r3d_18'.*"
                                         r"Received: spec='r4d'"):
        resnet3d.VideoResNet("r4d")
    features = R3D18(include_top=False, input_shape=(SIZE, SIZE, 3), frames=FRAMES,
                     base_filters=8)
    assert features.output_shape == (None, 1, 2, 2, 64)
    spec = dataclasses.replace(resnet3d.SPECS["r3d_18"], blocks=(1, 1, 1, 1))
    pooled = resnet3d.VideoResNet(spec, frames=FRAMES, input_shape=(SIZE, SIZE, 3),
                                  include_top=False, pooling="avg", base_filters=8)
    assert pooled.output_shape == (None, 64)
