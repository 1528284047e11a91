"""The temporal-module registry: a module declares where it sits and the one ResNet builder
puts it there (no copy of the builder); unknown kinds are refused with the registry's names;
the weights package does not import the model builders."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_tin.applications import temporal_modules
from keras_tin.applications.temporal_modules import ModuleSpec
from keras_tin.applications.temporal_resnet import TemporalResNet

FRAMES = 4
SHAPE = (FRAMES, 64, 64, 3)


class ToyScale(keras.layers.Layer):
    """x * per-channel scale (ones at init): a stand-in for a new temporal module."""

    def build(self, input_shape):
        self.scale = self.add_weight((input_shape[-1],), "ones", name="toy_scale")

    def call(self, inputs):
        return inputs * self.scale


@pytest.fixture
def toy():
    """Registers toy kinds for one test and removes them afterwards."""
    added = []

    def register(name, placement, **kwargs):
        build = kwargs.pop("build", lambda site: ToyScale(name=f"{site.name}_{name}"))
        added.append(name)
        return temporal_modules.register(ModuleSpec(name, placement, build, **kwargs))

    yield register
    for name in added:
        temporal_modules.unregister(name)


def producer(tensor):
    return tensor._keras_history.operation


def consumers(model, layer):
    """The layers that take `layer`'s output."""
    out = []
    for other in model.layers:
        for node in other._inbound_nodes:
            if any(producer(t) is layer for t in keras.tree.flatten(node.input_tensors)):
                out.append(other)
    return out


def build(temporal, depth=18, **kwargs):
    return TemporalResNet(temporal, depth, frames=FRAMES, input_shape=SHAPE, classes=3,
                          base_filters=16, **kwargs)


def test_after_bn3_module_sits_between_the_last_bn_and_the_add(toy):
    toy("toy_bn3", "after_bn3")
    model = build("toy_bn3")
    toys = [layer for layer in model.layers if isinstance(layer, ToyScale)]
    assert [layer.name for layer in toys] == [f"layer{s}_{b}_toy_bn3"
                                              for s in range(1, 5) for b in range(2)]
    for layer in toys:
        block = layer.name[:-len("_toy_bn3")]
        assert producer(layer.input).name == f"{block}_bn2"  # basic block: bn2 is the last BN
        (after,) = consumers(model, layer)
        assert isinstance(after, keras.layers.Add)
        assert model.get_layer(f"{block}_out") in consumers(model, after)
    # One more variable per block over TSN, found by top-level layer + variable name.
    tsn = build("tsn")
    assert model.count_params() == tsn.count_params() + sum(
        int(np.prod(layer.scale.shape)) for layer in toys)
    from keras_tin.weights.convert import keras_variables
    assert ("layer3_1_toy_bn3", "toy_scale") in keras_variables(model)


def test_after_conv1_module_sits_after_bn1_relu_and_feeds_conv2(toy):
    toy("toy_c1", "after_conv1", module_every=lambda stage_blocks: 2)
    model = build("toy_c1", depth=50)
    toys = [layer for layer in model.layers if isinstance(layer, ToyScale)]
    assert [layer.name for layer in toys] == [
        "layer1_0_toy_c1", "layer1_2_toy_c1", "layer2_0_toy_c1", "layer2_2_toy_c1",
        "layer3_0_toy_c1", "layer3_2_toy_c1", "layer3_4_toy_c1", "layer4_0_toy_c1",
        "layer4_2_toy_c1"]  # module_every=2: blocks 0, 2, 4 of each stage
    for layer in toys:
        block = layer.name[:-len("_toy_c1")]
        relu = producer(layer.input)
        assert isinstance(relu, keras.layers.ReLU)
        assert producer(relu.input).name == f"{block}_bn1"
        assert [c.name for c in consumers(model, layer)] == [f"{block}_conv2"]


def test_before_conv1_unfused_after_block_after_stage_head_and_stem(toy):
    toy("toy_all", "before_conv1")
    model = build("toy_all")
    layer = model.get_layer("layer2_0_toy_all")
    assert producer(layer.input).name == "layer1_1_out"  # the block input
    assert [c.name for c in consumers(model, layer)] == ["layer2_0_conv1"]
    # The shortcut still sees the block input.
    assert producer(model.get_layer("layer2_0_downsample_conv").input).name == "layer1_1_out"

    toy("toy_block", "after_block")
    model = build("toy_block")
    assert producer(model.get_layer("layer1_0_toy_block").input).name == "layer1_0_out"
    assert producer(model.get_layer("layer1_1_conv1").input).name == "layer1_0_toy_block"

    toy("toy_stage", "after_stage", stem_maxpool=False, stage_strides=(2, 2, 2, 2))
    model = build("toy_stage")
    assert [layer.name for layer in model.layers if isinstance(layer, ToyScale)] == [
        "layer1_toy_stage", "layer2_toy_stage", "layer3_toy_stage", "layer4_toy_stage"]
    assert producer(model.get_layer("layer3_toy_stage").input).name == "layer3_1_out"
    assert "maxpool" not in [layer.name for layer in model.layers]
    # No max-pool but stride 2 in the first stage: same feature map sizes as the ResNet.
    assert model.get_layer("layer1_0_out").output.shape[1:3] == (16, 16)
    assert build("tsn").get_layer("layer1_0_out").output.shape[1:3] == (16, 16)

    def clip_max_pool(site):
        def pool(x):  # (B*T, h, w, C) -> (B, C)
            x = keras.layers.GlobalMaxPooling2D(name="toy_head_pool")(x)
            from keras_tin.layers import FrameConsensus
            return FrameConsensus(site.frames, name="toy_head_consensus")(x)
        return pool

    toy("toy_head", "head", build=clip_max_pool)
    model = build("toy_head", classifier_activation=None)
    assert producer(model.get_layer("dropout").input).name == "toy_head_consensus"
    assert model.output.shape == (None, 3)
    assert build("toy_head", include_top=False).output.shape == (None, 128)


def test_registered_kinds_are_the_builtin_ones_and_unknown_kinds_list_them(toy):
    assert temporal_modules.names()[:3] == ("tin", "tsm", "tsn")
    assert temporal_modules.get("tsm").module_every((3, 4, 23, 3)) == 2
    assert temporal_modules.get("tin").module_every((3, 4, 23, 3)) == 1
    with pytest.raises(ValueError, match=r"temporal must be one of \('tin', 'tsm', 'tsn'.*"
                                         r"Received: temporal='not_a_module'"):
        TemporalResNet("not_a_module", 18)
    with pytest.raises(ValueError, match=r"ResNet-18 is built from basic blocks; "
                                         r"block='res2net' needs depth 50"):
        TemporalResNet("tea", 18)  # TEA sits in Res2Net-50 blocks only
    with pytest.raises(ValueError, match=r"temporal='tea' sits in 'res2net' blocks"):
        TemporalResNet("tea", 50, block="bottleneck")
    toy("toy_listed", "after_bn3")
    with pytest.raises(ValueError, match=r"one of \(.*'toy_listed'\).*temporal='nope'"):
        TemporalResNet("nope", 18)
    with pytest.raises(ValueError, match="already registered"):
        temporal_modules.register(ModuleSpec("tin", "before_conv1"))
    with pytest.raises(ValueError, match="placement must be None, one of"):
        ModuleSpec("bad", "after_everything")


def test_weights_package_does_not_import_the_model_builders():
    code = ("import sys\n"
            "import keras_tin.weights, keras_tin.weights.loading, keras_tin.weights.convert\n"
            "import keras_tin.weights.convert_mobilenet\n"
            "bad = sorted(m for m in sys.modules if m.startswith('keras_tin.applications'))\n"
            "assert not bad, bad\n"
            "import keras_tin\n"
            "assert keras_tin.applications.TINResNet18 is not None\n"
            "from keras_tin.weights import pretrained\n"
            "from keras_tin.weights.loading import build_for_record as b2\n")
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_module_with_parts_in_two_placements_gets_each_site(toy):
    seen = []

    def build(site):
        seen.append((site.placement, site.name))
        return ToyScale(name=f"{site.name}_{site.placement}_toy")

    toy("toy_two", ("after_conv1", "after_bn3"), build=build)
    model = TemporalResNet("toy_two", 18, frames=FRAMES, input_shape=SHAPE, classes=3,
                           base_filters=16)
    assert seen[:2] == [("after_conv1", "layer1_0"), ("after_bn3", "layer1_0")]
    assert len(seen) == 2 * 8
    layer = model.get_layer("layer1_0_after_bn3_toy")
    assert producer(layer.input).name == "layer1_0_bn2"
