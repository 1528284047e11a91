"""TEA-Res2Net-50 and the Res2Net-50 backbone (block="res2net"): the Res2Net block's exact
pooling, TEA's initialisation, conversion of TEA-code and Res2Net ImageNet checkpoints
against an independent PyTorch reference (weights/torch_reference_tea.py), parameter and
MAC counts, and refusals."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_reference as tr  # noqa: E402
import torch_reference_tea as tt  # noqa: E402
from keras_tin.applications import TEARes2Net50  # noqa: E402
from keras_tin.applications import TSNRes2Net50  # noqa: E402
from keras_tin.applications import TSNResNet50  # noqa: E402
from keras_tin.applications import TemporalResNet  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402
from keras_tin.weights import convert  # noqa: E402
from keras_tin.weights import registry  # noqa: E402

FRAMES, SIZE, CLASSES, CLIPS, SMALL = 4, 64, 7, 2, 16
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4


def clips(seed=0, frames=FRAMES, n=CLIPS):
    """0-255 RGB clips with per-frame motion (a moving bright square) and noise."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(30, 220, (n, frames, SIZE, SIZE, 3)).astype(np.float32)
    for t in range(frames):
        x[:, t, 8 + 4 * t:24 + 4 * t, 10:30] += 30
    return np.clip(x, 0, 255)


def folded(x):
    """0-255 NTHWC clips -> normalised, frame-folded NCHW torch tensor."""
    frames = ((x - MEAN) / STD).reshape(-1, SIZE, SIZE, 3).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(frames))


def save(state_dict, path):
    torch.save({"state_dict": state_dict, "epoch": 50, "arch": "tea50"}, str(path))
    return str(path)


def tea_model(frames=FRAMES, classes=CLASSES, base_filters=SMALL, **kwargs):
    return TEARes2Net50(frames=frames, input_shape=(frames, SIZE, SIZE, 3), classes=classes,
                        classifier_activation=None, base_filters=base_filters, **kwargs)


def weights_of(model):
    return {(layer, name): np.array(v) for (layer, name), v in
            convert.keras_variables(model).items()}


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# --- the Res2Net block ------------------------------------------------------------------

def test_stage_pool_counts_the_zero_padding_like_pytorch():
    """The 'stage' block pools its last group with AvgPool2d(3, stride, padding=1),
    count_include_pad=True: border means divide by 9, where Keras 'same' pooling divides
    by the in-image count."""
    model = TSNRes2Net50(frames=1, input_shape=(1, SIZE, SIZE, 3), base_filters=SMALL,
                         classes=3)
    names = {layer.name for layer in model.layers}
    assert {"layer1_0_pool", "layer2_0_pool", "layer4_0_pool"} <= names
    assert "layer1_1_pool" not in names and "layer2_3_pool" not in names  # 'normal' blocks
    rng = np.random.RandomState(0)
    for block, stride in (("layer1_0", 1), ("layer2_0", 2)):
        x = rng.uniform(0.5, 2.0, (2, 7, 7, 5)).astype(np.float32)
        pad, pool = model.get_layer(block + "_pool_pad"), model.get_layer(block + "_pool")
        ours = np.asarray(pool(pad(x)))
        want = F.avg_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, stride, 1,
                            count_include_pad=True).numpy().transpose(0, 2, 3, 1)
        assert ours.shape == want.shape
        np.testing.assert_allclose(ours, want, atol=1e-6)
        same = np.asarray(keras.layers.AveragePooling2D(3, stride, padding="same")(x))
        assert same.shape == want.shape
        assert np.abs(same - want).max() > 0.1  # the corners differ by ~1/3 of the mean


def test_res2net_block_layer_names_and_widths():
    model = TSNRes2Net50(frames=1, input_shape=(1, SIZE, SIZE, 3), classes=3)
    assert model.name == "tsn_res2net50"
    for name, width in (("layer1_1", 26), ("layer2_2", 52), ("layer3_5", 104),
                        ("layer4_0", 208)):
        assert model.get_layer(name + "_convs_2").kernel.shape == (3, 3, width, width)
        assert model.get_layer(name + "_bns_0").gamma.shape == (width,)
        assert model.get_layer(name + "_conv1").kernel.shape[-1] == 4 * width
    assert model.get_layer("layer3_0_downsample_conv").kernel.shape == (1, 1, 512, 1024)
    with pytest.raises(ValueError, match="block='res2net' needs depth 50 or 101"):
        TemporalResNet("tsn", 18, block="res2net")


# --- TEA's initialisation ----------------------------------------------------------------

def test_fresh_tea_temporal_convs_and_motion_excitation():
    model = tea_model()
    ref = tt.Release("tea", FRAMES, CLASSES, base_filters=SMALL)  # the publisher's init
    ref_sd = ref.state_dict()
    for block in ("layer1_0", "layer2_1", "layer3_4", "layer4_2"):
        layer, b = block.split("_")
        for i in range(4):
            kernel = np.asarray(model.get_layer(f"{block}_shifts_{i}").kernel)  # (3, w)
            torch_w = ref_sd[f"module.base_model.{layer}.{b}.shifts.{i}.conv.weight"].numpy()
            np.testing.assert_array_equal(kernel, torch_w[:, 0, :].T)
            width = kernel.shape[1]
            if i < 3:  # identity
                assert (kernel[1] == 1).all() and (kernel[[0, 2]] == 0).all()
            else:  # the first w//2 channels take frame t+1, the next w//2 frame t-1
                fold = width // 2
                assert (kernel[2, :fold] == 1).all() and (kernel[0, fold:2 * fold] == 1).all()
                assert kernel.sum() == width
    # The last group's conv moves features in time: x[t] = t on a clip of FRAMES frames.
    shift = model.get_layer("layer2_1_shifts_3")
    width = shift.kernel.shape[1]
    x = np.broadcast_to(np.arange(FRAMES, dtype=np.float32)[:, None, None, None] + 1,
                        (FRAMES, 2, 2, width)).copy()
    out = np.asarray(shift(x))[:, 0, 0]
    fold = width // 2
    np.testing.assert_array_equal(out[:, 0], [2, 3, 4, 0])  # from t+1, zero at the end
    np.testing.assert_array_equal(out[:, fold], [0, 1, 2, 3])  # from t-1
    np.testing.assert_array_equal(model.get_layer("layer2_1_shifts_0")(x), x)
    # ME: BNs start at gamma 1, beta 0; the 1x1 convs as Res2Net's kaiming_normal fan_out.
    for bn in ("layer3_1_me_bn1", "layer3_1_me_bn3"):
        layer = model.get_layer(bn)
        assert (np.asarray(layer.gamma) == 1).all() and (np.asarray(layer.beta) == 0).all()
    conv1 = np.asarray(model.get_layer("layer4_1_me_conv1").kernel)  # (1, 1, 208, 13)
    assert conv1.shape == (1, 1, 4 * 52, 4 * 52 // 16)
    assert abs(conv1.std() / (2.0 / conv1.shape[-1]) ** 0.5 - 1) < 0.06
    assert model.get_layer("layer4_1_me_conv2").kernel.shape == (3, 3, 13, 1)


# --- conversion ---------------------------------------------------------------------------

@pytest.mark.parametrize("base_filters,seed", [(64, 1), (SMALL, 2)])
def test_tea_checkpoint_matches_pytorch(base_filters, seed, tmp_path):
    """A TEA-code checkpoint (module.base_model.* / module.new_fc.*, random weights, random
    BN statistics, random temporal convs) gives the PyTorch logits. 64 is the real width;
    16 has odd group widths (13) where the temporal convs cover every channel."""
    ref = tr.randomize(tt.Release("tea", FRAMES, CLASSES, base_filters=base_filters), seed)
    path = save(ref.state_dict(), tmp_path / "tea.pth.tar")
    model = tea_model(base_filters=base_filters, weights=path)
    x = clips(seed)
    with torch.no_grad():
        want = ref(folded(x)).numpy()
    got = np.asarray(model(x, training=False))
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_res2net_imagenet_checkpoint_into_tsn_res2net(tmp_path):
    """The Res2Net authors' ImageNet layout: the one-frame TSN-Res2Net ("res2net50") is the
    image classifier."""
    ref = tr.randomize(tt.Res2Net(None, classes=1000, base_filters=SMALL), 3)
    path = save(ref.state_dict(), tmp_path / "res2net50_26w_4s.pth")
    model = build_for_architecture("res2net50", frames=1, classes=1000, base_filters=SMALL,
                                   input_shape=(1, SIZE, SIZE, 3), classifier_activation=None,
                                   weights=path)
    x = clips(4, frames=1, n=3)
    with torch.no_grad():
        want = ref(folded(x)).numpy()
    got = np.asarray(model(x, training=False))
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_res2net_imagenet_checkpoint_into_tea_loads_the_backbone_only(tmp_path, capsys):
    ref = tr.randomize(tt.Res2Net(None, classes=1000, base_filters=SMALL), 5)
    path = save(ref.state_dict(), tmp_path / "res2net50_26w_4s.pth")
    model = tea_model(classes=1000)
    before = weights_of(model)
    result = convert.load_torch_checkpoint(model, path)
    assert result["temporal"] is None and result["form"] == "imagenet"
    assert result["head_loaded"]
    out = capsys.readouterr().out
    assert "TEA-module variables keep their initialisation" in out
    after = weights_of(model)
    tea_keys = [k for k in after if "_me_" in k[0] or "_shifts_" in k[0]]
    assert len(tea_keys) == 16 * (3 + 2 * 4 + 4)  # 3 ME convs, 2 ME BNs, 4 temporal convs
    for key in tea_keys:
        np.testing.assert_array_equal(after[key], before[key])
    sd = ref.state_dict()
    np.testing.assert_array_equal(after[("layer2_1_convs_1", "kernel")],
                                  sd["layer2.1.convs.1.weight"].numpy().transpose(2, 3, 1, 0))
    # With every ME gate closed (bn3 gamma = beta = 0: sigmoid(0) - 0.5 = 0) and every
    # temporal conv the identity, TEA is the loaded Res2Net on each frame.
    for (layer, name), variable in convert.keras_variables(model).items():
        if layer.endswith("_me_bn3") and name in ("gamma", "beta"):
            variable.assign(np.zeros(variable.shape, "float32"))
        if layer.endswith("_shifts_3"):
            identity = np.zeros(variable.shape, "float32")
            identity[1] = 1
            variable.assign(identity)
    x = clips(6)
    with torch.no_grad():
        per_frame = ref(folded(x)).numpy().reshape(CLIPS, FRAMES, -1).mean(1)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), per_frame, atol=TOL,
                               rtol=0)


def _snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def test_refusals_name_both_sides_and_load_nothing(tmp_path):
    tea_sd = tr.randomize(tt.Release("tea", FRAMES, CLASSES, base_filters=SMALL), 7).state_dict()
    tsn = TSNRes2Net50(frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3), classes=CLASSES,
                       base_filters=SMALL)
    with pytest.raises(ValueError, match=r"TEA-Res2Net-50 .* model 'tsn_res2net50' is TSN"):
        convert.assign_state_dict(tsn, tea_sd)
    resnet = TSNResNet50(frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                         classes=CLASSES, base_filters=SMALL)
    with pytest.raises(ValueError, match="not built from Res2Net blocks"):
        convert.assign_state_dict(resnet, tea_sd)
    model = tea_model()
    before = _snapshot(model)
    resnet_sd = tr.to_authors_layout(tr.Recognizer("tsn", 50, FRAMES, CLASSES).state_dict())
    with pytest.raises(ValueError, match="checkpoint is not a Res2Net one"):
        convert.assign_state_dict(model, resnet_sd)
    broken = dict(tea_sd)
    del broken["module.base_model.layer3.2.me.conv3.weight"]
    broken["module.base_model.layer3.2.me.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError) as error:
        convert.load_torch_checkpoint(model, save(broken, tmp_path / "broken.pth"))
    assert "layer3.2.me.extra.weight" in str(error.value)
    missing = dict(tea_sd)
    del missing["module.base_model.layer3.2.me.conv3.weight"]
    del missing["module.base_model.layer1.0.shifts.3.conv.weight"]
    with pytest.raises(ValueError) as error:
        convert.assign_state_dict(model, missing)
    assert "layer3_2_me_conv3/kernel" in str(error.value)
    assert "layer1_0_shifts_3/kernel" in str(error.value)
    with pytest.raises(ValueError, match="layout must be one of"):
        convert.assign_state_dict(model, tea_sd, layout="openmmlab")
    for got, want in zip(_snapshot(model), before):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="sits in 'res2net' blocks"):
        TemporalResNet("tea", 50, block="bottleneck")
    with pytest.raises(ValueError, match=r"defined for depth \(50,\)"):
        TemporalResNet("tea", 101)


# --- sizes, names, records ----------------------------------------------------------------

def test_parameter_counts_and_macs():
    """Trainable parameters (ZOO_SPEC [calc]: Res2Net-50-26w4s 1000 classes 25,699,120;
    TEA 174 classes 24,456,280), the same in the PyTorch reference; MACs as the reference's
    convs and linears count them."""
    res2net = build_for_architecture("res2net50", frames=1, classes=1000)
    tea = build_for_architecture("tea_res2net50", frames=8, classes=174)
    assert trainable_count(res2net) == tt.trainable_parameters(tt.Res2Net()) == 25_699_120
    assert trainable_count(tea) == tt.trainable_parameters(tt.Release("tea", 8, 174)) \
        == 24_456_280
    ref = tt.Release("tea", 2, 174).eval()
    macs = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            macs.append(output.shape[0] * module.in_features * module.out_features)
        elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            per_out = module.weight[0].numel()
            macs.append(output.numel() * per_out)

    for module in ref.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(count)
    with torch.no_grad():
        ref(torch.zeros(2, 3, 224, 224))
    assert flops(tea) == sum(macs) * 4  # 2 frames in the reference, 8 in the model
    assert 34e9 < flops(tea) < 35e9 and 4.2e9 < flops(res2net) < 4.3e9


def test_architecture_names_constructors_and_record():
    for arch, name in (("tea_res2net50", "tea_res2net50"), ("tsn_res2net50", "tsn_res2net50"),
                       ("res2net50", "tsn_res2net50")):
        model = build_for_architecture(arch, frames=2, classes=5, base_filters=SMALL,
                                       input_shape=(2, 32, 32, 3))
        assert model.name == name and model.output_shape == (None, 5)
        assert ("layer1_0_me_conv1" in {layer.name for layer in model.layers}) == (
            arch.startswith("tea"))
    assert TEARes2Net50.__name__ == "TEARes2Net50"
    record = registry.get_record("res2net50_26w_4s_imagenet")
    assert record["architecture"] == "res2net50" and record["classes"] == 1000
    assert record["url"].endswith(f"-{record['sha256_prefix']}.pth")


def test_tea_saves_and_reloads_as_keras_file(tmp_path):
    model = tea_model(frames=2, base_filters=SMALL)
    rng = np.random.RandomState(0)
    for variable in model.weights:  # non-trivial values everywhere (variances stay > 0)
        if "variance" not in variable.path:
            variable.assign(variable + rng.normal(0, 0.01, variable.shape).astype("float32"))
    x = clips(8, frames=2)
    path = str(tmp_path / "tea.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    want = np.asarray(model(x))
    assert np.ptp(want) > 0
    np.testing.assert_allclose(np.asarray(again(x)), want, rtol=1e-5, atol=1e-5)
