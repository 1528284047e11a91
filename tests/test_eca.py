"""ECA channel attention (ECA-Net) in the TIN/TSM/TSN ResNets, against the independent PyTorch
reference weights/torch_reference_eca.py (the official ECA-ResNet module names)."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
import torch_reference as tr  # noqa: E402
import torch_reference_eca as te  # noqa: E402
from keras_tin.applications import temporal_modules  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.applications.temporal_resnet import DEPTHS  # noqa: E402
from keras_tin.applications.temporal_resnet import ECA_KERNEL_SIZES  # noqa: E402
from keras_tin.applications.temporal_resnet import TemporalResNet  # noqa: E402
from keras_tin.layers import NonLocalAttention  # noqa: E402
from keras_tin.layers import TemporalShift  # noqa: E402
from keras_tin.layers.eca import ECA  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402
from keras_tin.weights import layouts  # noqa: E402
from keras_tin.weights.convert import keras_variables  # noqa: E402

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4
WIDTH, SIZE, CLASSES = 16, 64, 7


def clips(frames, clips=2, size=SIZE, seed=0):
    """0-255 RGB clips with colour and a gradient that change per clip and per frame."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    colour = rng.uniform(40, 215, (clips, frames, 1, 1, 3))
    angle = rng.uniform(0, 2 * np.pi, (clips, 1, 1, 1, 1)) + np.linspace(0, 1.5, frames)[
        None, :, None, None, None]
    wave = 60 * np.sin(3 * (np.cos(angle) * xx[..., None] + np.sin(angle) * yy[..., None]))
    noise = rng.normal(0, 10, (clips, frames, size, size, 3))
    return np.clip(colour + wave + noise, 0, 255).astype(np.float32)


def folded(x):
    """Clips (N, T, H, W, 3) 0-255 -> normalised NCHW frames (N*T, 3, H, W) for PyTorch."""
    frames = ((x - MEAN) / STD).reshape((-1,) + x.shape[2:]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(frames))


def reference(depth=50, seed=1, classes=CLASSES, width=WIDTH, **kwargs):
    ref = te.ECAResNet(depth, ECA_KERNEL_SIZES[depth], classes, width, **kwargs)
    return tr.randomize(ref, seed=seed).eval()


def save_official(ref, path, legacy=False):
    """The official layout; legacy=True: the pre-1.6 serialisation of the 2019/2020 files."""
    torch.save(te.official_checkpoint(ref), str(path), _use_new_zipfile_serialization=not legacy)
    return str(path)


def eca_model(temporal="tsn", depth=50, frames=2, classes=CLASSES, **kwargs):
    kwargs.setdefault("base_filters", WIDTH)
    return TemporalResNet(temporal, depth, frames=frames, input_shape=(frames, SIZE, SIZE, 3),
                          classes=classes, classifier_activation=None,
                          channel_attention="eca", **kwargs)


def eca_layers(model):
    return [layer for layer in model.layers if isinstance(layer, ECA)]


# --- the layer ------------------------------------------------------------------------------

@pytest.mark.parametrize("k,channels", [(3, 13), (5, 8), (7, 6), (1, 4)])
def test_eca_layer_matches_pytorch(k, channels):
    rng = np.random.RandomState(k)
    x = rng.normal(1.0, 2.0, (3, 5, 4, channels)).astype(np.float32)
    ref = te.ECALayer(k)
    with torch.no_grad():
        ref.conv.weight.copy_(torch.from_numpy(rng.normal(0, 1, (1, 1, k)).astype(np.float32)))
        want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    layer = ECA(k)
    layer.build(x.shape)
    assert tuple(layer.kernel.shape) == (k, 1, 1)
    layer.kernel.assign(np.transpose(ref.conv.weight.detach().numpy(), (2, 1, 0)))
    got = keras.ops.convert_to_numpy(layer(x))
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(want - x).max() > 0.1  # the gate does something


def test_eca_layer_zero_pads_the_channel_ends():
    """Descriptor all ones, kernel all ones: a channel sees as many taps as lie inside the
    channel range, so the gate is sigmoid(taps) - smaller at both ends."""
    k, channels = 5, 7
    layer = ECA(k)
    x = np.ones((1, 2, 3, channels), np.float32)
    layer.build(x.shape)
    layer.kernel.assign(np.ones((k, 1, 1), np.float32))
    gate = keras.ops.convert_to_numpy(layer(x))[0, 0, 0]
    taps = np.array([min(c + 2, channels - 1) - max(c - 2, 0) + 1 for c in range(channels)])
    np.testing.assert_allclose(gate, 1 / (1 + np.exp(-taps)), atol=1e-6)
    assert gate[0] < gate[3] and gate[-1] < gate[3]


def test_eca_layer_config_round_trip_and_refusals():
    layer = ECA(7, name="layer3_0_eca")
    again = ECA.from_config(layer.get_config())
    assert again.kernel_size == 7 and again.name == "layer3_0_eca"
    for bad in (4, 0, -3, 2.0, True, "3"):
        with pytest.raises(ValueError, match="kernel_size"):
            ECA(bad)


# --- the networks and their weights ---------------------------------------------------------

def test_tsn_eca_r50_with_the_imagenet_checkpoint_is_the_image_model_per_frame(tmp_path,
                                                                               capsys):
    """weights=<official ECA-ResNet-50 checkpoint>: TSN+ECA equals the PyTorch image model on
    every frame, logits averaged; with another class count the backbone still loads."""
    frames = 3
    ref = reference(50, seed=1)
    path = save_official(ref, tmp_path / "eca_resnet50_k3557.pth.tar", legacy=True)
    x = clips(frames)
    model = eca_model("tsn", 50, frames, weights=path)
    with torch.no_grad():
        want = te.video_logits(ref, folded(x), frames).numpy()
    got = np.asarray(model.predict(x, verbose=0))
    err = np.abs(got - want).max()
    assert err < TOL
    assert np.abs(want[0] - want[1]).max() > 30 * TOL  # distinct clips, distinct logits
    # The ECA gates matter: the same network without them is far off.
    ungated = copy.deepcopy(ref)
    with torch.no_grad():
        for module in ungated.modules():
            if isinstance(module, te.ECALayer):
                module.conv.weight.zero_()  # gate 0.5 everywhere
        without = te.video_logits(ungated, folded(x), frames).numpy()
    assert np.abs(without - want).max() > 30 * TOL

    capsys.readouterr()
    other = eca_model("tsn", 50, frames, classes=5, include_top=False, pooling="avg",
                      weights=path)
    assert "model has no classifier" in capsys.readouterr().out
    features = np.asarray(other.predict(x, verbose=0))
    with torch.no_grad():
        ref_features = ref.features(folded(x)).mean(dim=(2, 3)).reshape(
            2, frames, -1).mean(dim=1).numpy()
    assert np.abs(features - ref_features).max() < TOL
    print(f"TSN+ECA-R50 (width {WIDTH}): max |keras - torch| = {err:.2e}, "
          f"max |logit| = {np.abs(want).max():.3f}")  # shown on failure


def test_eca_r50_at_the_released_width(tmp_path):
    """The released ECA-ResNet-50 shape (width 64, k 3557, 1000 classes): 80 ECA parameters
    and the same logits as PyTorch, through the architecture name 'eca_resnet50'."""
    ref = reference(50, seed=2, classes=1000, width=64)
    path = save_official(ref, tmp_path / "eca_resnet50_k3557.pth.tar")
    model = build_for_architecture("eca_resnet50", frames=1, input_shape=(1, SIZE, SIZE, 3),
                                   classes=1000, classifier_activation=None, weights=path)
    assert sum(layer.count_params() for layer in eca_layers(model)) == 80  # paper: 80
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == sum(p.numel() for p in ref.parameters())  # torchvision R50 + 80
    x = clips(1, clips=2, seed=3)
    with torch.no_grad():
        want = ref(folded(x)).numpy()
    err = np.abs(np.asarray(model.predict(x, verbose=0)) - want).max()
    print(f"ECA-R50 width 64: max |keras - torch| = {err:.2e}")
    assert err < TOL


def test_tsm_eca_loads_the_imagenet_checkpoint_and_matches_the_shifted_reference(tmp_path):
    frames = 4
    ref = reference(50, seed=4)
    path = save_official(ref, tmp_path / "eca50.pth")
    shifted = reference(50, seed=99, temporal="tsm", frames=frames)
    shifted.load_state_dict(te.official_state_dict(ref))
    model = eca_model("tsm", 50, frames, weights=path)
    x = clips(frames, seed=5)
    with torch.no_grad():
        want = te.video_logits(shifted, folded(x), frames).numpy()
        per_frame = te.video_logits(ref, folded(x), frames).numpy()
    err = np.abs(np.asarray(model.predict(x, verbose=0)) - want).max()
    print(f"TSM+ECA-R50: max |keras - torch| = {err:.2e}")
    assert err < TOL
    assert np.abs(want - per_frame).max() > 30 * TOL  # the shift changes the output


def test_tin_eca_loads_the_backbone_and_keeps_its_tin_modules(tmp_path, capsys):
    """An ECA ImageNet checkpoint into TIN+ECA: backbone and head load, the TIN modules keep
    their initialisation (announced). With those TIN parameters (randomised, to make it
    count) copied into the reference, the outputs agree."""
    frames = 4
    ref = reference(18, seed=6)
    path = save_official(ref, tmp_path / "eca18.pth")
    capsys.readouterr()
    model = eca_model("tin", 18, frames)
    variables = keras_variables(model)
    tin_before = {key: np.array(v.numpy()) for key, v in variables.items()
                  if key[1].startswith(("offset_", "weight_conv"))}
    assert tin_before
    from keras_tin.weights import load_weights
    load_weights(model, path)
    out = capsys.readouterr().out
    assert "temporal-module variables keep their initialisation" in out
    for key, before in tin_before.items():
        np.testing.assert_array_equal(variables[key].numpy(), before)

    interlaced = reference(18, seed=7, temporal="tin", frames=frames)
    interlaced.load_state_dict(te.official_state_dict(ref), strict=False)
    rng = np.random.RandomState(8)
    names = {"offset_net.conv": "offset_conv", "offset_net.fc1": "offset_fc1",
             "offset_net.fc2": "offset_fc2", "weight_net.conv": "weight_conv"}
    with torch.no_grad():
        for name, param in interlaced.named_parameters():
            if ".temporal." not in name:
                continue
            block, module = name.split(".temporal.")
            module, what = module.rsplit(".", 1)
            layer, var, axes = layouts.keras_target(f"{block}.tin.{names[module]}.{what}")
            value = rng.normal(0, 0.5, variables[(layer, var)].shape).astype(np.float32)
            variables[(layer, var)].assign(value)
            param.copy_(torch.from_numpy(np.transpose(value, axes) if axes else value))
    x = clips(frames, seed=9)
    with torch.no_grad():
        want = te.video_logits(interlaced, folded(x), frames).numpy()
        per_frame = te.video_logits(ref, folded(x), frames).numpy()
    err = np.abs(np.asarray(model.predict(x, verbose=0)) - want).max()
    print(f"TIN+ECA-R18: max |keras - torch| = {err:.2e}")
    assert err < TOL
    assert np.abs(want - per_frame).max() > 30 * TOL


def test_eca_parameter_counts_and_flops():
    frames = 2
    for depth, sizes in ECA_KERNEL_SIZES.items():
        counts = DEPTHS[depth][1]
        want = sum(n * k for n, k in zip(counts, sizes))
        if depth == 50:
            assert want == 80  # the paper's "80 vs 24.37M" (ZOO_SPEC section 6 [calc])
        if depth in (18, 50):  # building 34/101 adds time, not checks
            model = eca_model("tsn", depth, frames)
            layers = eca_layers(model)
            assert len(layers) == sum(counts)
            assert sum(layer.count_params() for layer in layers) == want
    plain = TemporalResNet("tsn", 50, frames=frames, input_shape=(frames, SIZE, SIZE, 3),
                           classes=CLASSES, base_filters=WIDTH)
    with_eca = eca_model("tsn", 50, frames)
    assert with_eca.count_params() - plain.count_params() == 80
    # The Conv1d's C * k multiply-accumulates per block and frame, nothing else.
    conv_macs = sum(layer.output.shape[-1] * layer.kernel_size for layer in eca_layers(with_eca))
    assert conv_macs == sum(n * 4 * WIDTH * 2 ** s * k
                            for s, (n, k) in enumerate(zip(DEPTHS[50][1], (3, 5, 5, 7))))
    assert flops(with_eca) - flops(plain) == frames * conv_macs


def test_eca_with_other_kernel_sizes_and_composed_with_non_local(tmp_path, capsys):
    """ECA and non-local blocks in one TSM network; an ECA checkpoint initialises it (the
    non-local blocks keep their init, announced)."""
    model = eca_model("tsm", 50, 2, non_local="embedded_gaussian",
                      eca_kernel_sizes=(1, 3, 5, 9))
    sizes = {layer.name: layer.kernel_size for layer in eca_layers(model)}
    assert len(sizes) == 16 and sizes["layer1_2_eca"] == 1 and sizes["layer4_0_eca"] == 9
    assert any(isinstance(layer, NonLocalAttention)
               for layer in model._flatten_layers(include_self=False))
    ref = te.ECAResNet(50, (1, 3, 5, 9), CLASSES, WIDTH)
    capsys.readouterr()
    from keras_tin.weights import load_weights
    load_weights(model, save_official(tr.randomize(ref, seed=10), tmp_path / "k1359.pth"))
    assert "non-local-block variables keep their initialisation" in capsys.readouterr().out
    np.testing.assert_allclose(model.get_layer("layer4_0_eca").kernel.numpy()[:, 0, 0],
                               ref.layer4[0].eca.conv.weight.detach().numpy()[0, 0])
    assert model(clips(2, clips=1)).shape == (1, CLASSES)


def test_architecture_names_build_eca_in_every_block():
    for arch, depth, temporal in (("tsm_eca_resnet18", 18, "tsm"), ("tin_eca_resnet34", 34, "tin"),
                                  ("tsm_eca_resnet101", 101, "tsm")):
        model = build_for_architecture(arch, frames=2, input_shape=(2, 32, 32, 3), classes=3,
                                       base_filters=16)
        sizes = [layer.kernel_size for layer in eca_layers(model)]
        counts = DEPTHS[depth][1]
        assert sizes == [k for n, k in zip(counts, ECA_KERNEL_SIZES[depth]) for _ in range(n)]
        assert model.name == f"{temporal}_resnet{depth}"
        if arch == "tsm_eca_resnet101":  # TSM every other block, ECA in all 33
            assert sum(isinstance(layer, TemporalShift)
                       for layer in model._flatten_layers(include_self=False)) == 18


def test_eca_is_an_add_on_not_a_temporal_kind():
    assert temporal_modules.ECA.placement == "after_bn3"
    assert "eca" not in temporal_modules.names()
    with pytest.raises(ValueError, match="temporal must be one of"):
        TemporalResNet("eca", 50)


@pytest.mark.parametrize("kwargs,match", [
    ({"channel_attention": "se"}, r"channel_attention must be one of \(None, 'eca'\).*'se'"),
    ({"channel_attention": None, "eca_kernel_sizes": (3, 5, 5, 7)},
     r"eca_kernel_sizes needs channel_attention='eca'"),
    ({"channel_attention": "eca", "eca_kernel_sizes": (3, 5, 5)},
     r"one odd kernel size per stage \(4 stages\).*\(3, 5, 5, 7\).*\(3, 5, 5\)"),
    ({"channel_attention": "eca", "eca_kernel_sizes": 3}, r"per stage.*eca_kernel_sizes=3"),
    ({"channel_attention": "eca", "eca_kernel_sizes": (3, 4, 5, 7)},
     r"odd positive integers.*\(3, 4, 5, 7\)"),
    ({"channel_attention": "eca", "eca_kernel_sizes": (3, 0, 5, 7)}, r"\(3, 0, 5, 7\)"),
    ({"channel_attention": "eca", "eca_kernel_sizes": (3, -1, 5, 7)}, r"\(3, -1, 5, 7\)"),
    ({"channel_attention": "eca", "eca_kernel_sizes": (3, 5.0, 5, 7)}, r"\(3, 5.0, 5, 7\)"),
])
def test_bad_channel_attention_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalResNet("tsn", 50, frames=2, input_shape=(2, 32, 32, 3), **kwargs)


def test_eca_checkpoint_into_a_model_without_eca_is_refused(tmp_path):
    path = save_official(reference(18, seed=11), tmp_path / "eca18.pth")
    model = TemporalResNet("tsm", 18, frames=2, input_shape=(2, 32, 32, 3), classes=CLASSES,
                           base_filters=WIDTH)
    before = model.get_layer("conv1").get_weights()[0].copy()
    from keras_tin.weights import load_weights
    with pytest.raises(ValueError, match=r"nothing was loaded.*layer1\.0\.eca\.weight.*"
                                         r"channel_attention='eca', "
                                         r"eca_kernel_sizes=\(3, 5, 7, 7\)"):
        load_weights(model, path, verbose=False)
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], before)


def test_eca_checkpoint_with_other_kernel_sizes_is_refused(tmp_path):
    ref = tr.randomize(te.ECAResNet(18, (3, 3, 3, 3), CLASSES, WIDTH), seed=12)
    model = eca_model("tsn", 18, 2)
    from keras_tin.weights import load_weights
    with pytest.raises(ValueError, match=r"shape mismatches.*kernel sizes per stage are "
                                         r"\(3, 3, 3, 3\) but the model's are \(3, 5, 7, 7\)"):
        load_weights(model, save_official(ref, tmp_path / "k3333.pth"), verbose=False)


def test_plain_torchvision_resnet_into_an_eca_model_keeps_the_eca_kernels(tmp_path, capsys):
    """A torchvision ImageNet ResNet (no ECA keys) initialises an ECA model: everything but
    the ECA kernels loads, and those keep their initialisation, announced."""
    ref = reference(18, seed=13)
    plain = {k: v for k, v in te.official_state_dict(ref).items() if ".eca." not in k}
    path = tmp_path / "resnet18.pth"
    torch.save(plain, str(path))
    model = eca_model("tsn", 18, 2)
    kernels = {layer.name: layer.kernel.numpy().copy() for layer in eca_layers(model)}
    capsys.readouterr()
    from keras_tin.weights import load_weights
    load_weights(model, str(path))
    assert "8 ECA variables keep their initialisation" in capsys.readouterr().out
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(), kernel)
    np.testing.assert_allclose(model.get_layer("conv1").get_weights()[0],
                               ref.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))


def test_video_checkpoint_without_eca_into_an_eca_model_is_refused(tmp_path):
    """A TSN video checkpoint (OpenMMLab layout) has trained all its blocks without ECA:
    into an ECA model it is refused, naming channel_attention=None."""
    ref = tr.randomize(tr.Recognizer("tsn", 18, 2, CLASSES), seed=14)
    path = tmp_path / "tsn18.pth"
    torch.save({"state_dict": ref.state_dict()}, str(path))
    model = eca_model("tsn", 18, 2, base_filters=64)
    from keras_tin.weights import load_weights
    with pytest.raises(ValueError, match=r"layer1_0_eca/kernel.*checkpoint has none; build it "
                                         r"with channel_attention=None"):
        load_weights(model, str(path), verbose=False)


# --- the manifest records of the released ECA-ResNets (downloaded by hand) ------------------

ECA_RECORDS = {18: "eca_resnet18_k3577_imagenet", 34: "eca_resnet34_k3357_imagenet",
               50: "eca_resnet50_k3557_imagenet", 101: "eca_resnet101_k3357_imagenet"}


def test_manifest_records_of_the_released_eca_resnets():
    from keras_tin.weights import registry
    for depth, name in ECA_RECORDS.items():
        r = registry.get_record(name)
        assert r["architecture"] == f"eca_resnet{depth}" and r["layout"] == "torchvision"
        assert r["url"] is None and r["download"] == "manual" and r["classes"] == 1000
        assert r["download_page"].startswith("https://drive.google.com/open?id=")
        assert r["download_mirrors"][0].startswith("https://pan.baidu.com/s/")
        # The file name's k-tag, the record's sizes and the constructor default agree.
        assert tuple(r["eca_kernel_sizes"]) == ECA_KERNEL_SIZES[depth]
        assert name.split("_")[2] == "k" + "".join(map(str, r["eca_kernel_sizes"]))
    # BangguWu/ECANet README, ImageNet table.
    assert [registry.get_record(n)["top1"] for n in ECA_RECORDS.values()] == [
        70.92, 74.21, 77.42, 78.65]


def test_eca_record_builds_its_model_with_the_released_kernel_sizes():
    from keras_tin.weights import registry
    from keras_tin.weights.loading import build_for_record
    record = registry.get_record(ECA_RECORDS[18])
    model = build_for_record(record, input_shape=(1, 32, 32, 3), base_filters=16)
    assert model.output_shape == (None, 1000)
    assert [layer.kernel_size for layer in eca_layers(model)] == [
        k for k in record["eca_kernel_sizes"] for _ in range(2)]


def test_eca_record_file_placed_by_hand_loads_into_an_eca_video_model(tmp_path):
    from keras_tin.weights import load_weights
    from keras_tin.weights import registry
    name = ECA_RECORDS[18]
    model = eca_model("tsm", 18, 2, classes=1000, base_filters=64)
    with pytest.raises(registry.ManualDownloadError, match=r"drive\.google\.com.*utsy"):
        load_weights(model, name, cache_dir=str(tmp_path))
    ref = reference(18, seed=15, classes=1000, width=64)
    cached = tmp_path / registry.CACHE_SUBDIR / f"{name}.pth"
    cached.parent.mkdir(parents=True)
    save_official(ref, cached)
    with pytest.warns(UserWarning, match="unverified"):
        load_weights(model, name, cache_dir=str(tmp_path), allow_unverified=True,
                     verbose=False)
    np.testing.assert_allclose(model.get_layer("layer3_1_eca").kernel.numpy()[:, 0, 0],
                               ref.layer3[1].eca.conv.weight.detach().numpy()[0, 0])
    np.testing.assert_allclose(model.get_layer("fc").kernel.numpy(),
                               ref.fc.weight.detach().numpy().T)
    plain = TemporalResNet("tsm", 18, frames=2, input_shape=(2, SIZE, SIZE, 3), classes=1000)
    with pytest.warns(UserWarning, match="unverified"), \
            pytest.raises(ValueError, match="channel_attention='eca'"):
        load_weights(plain, name, cache_dir=str(tmp_path), allow_unverified=True,
                     verbose=False)
