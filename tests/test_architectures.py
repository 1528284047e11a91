"""Architecture names of networks with a builder of their own (architectures.STANDALONE)."""

import keras
import numpy as np
import pytest

from keras_tin import architectures
from keras_tin.applications import records
from keras_tin.training import config as train_config
from keras_tin.training import trainer

CALLS = []


def TinyStandalone(frames=2, input_shape=None, classes=3, classifier_activation="softmax",
                   dropout_rate=0.0, weights=None, name="tiny_standalone", **kwargs):
    """A stand-in network of its own: records what the registry hands its builder."""
    CALLS.append(dict(frames=frames, input_shape=input_shape, classes=classes, **kwargs))
    inputs = keras.Input(input_shape or (frames, 8, 8, 3))
    x = keras.layers.GlobalAveragePooling3D()(inputs)
    outputs = keras.layers.Dense(classes, activation=classifier_activation, name="fc")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def standalone(monkeypatch):
    monkeypatch.setitem(architectures.STANDALONE, "tiny3d_test",
                        f"{__name__}:TinyStandalone")
    CALLS.clear()
    return "tiny3d_test"


def test_standalone_name_parses_and_builds_with_its_own_function(standalone):
    parsed = architectures.parse(standalone)
    assert parsed.standalone and not parsed.image_backbone
    assert parsed.temporal is None and parsed.depth is None
    model = records.build_for_architecture(standalone, frames=2, classes=5)
    assert model.output_shape == (None, 5)
    assert CALLS[-1]["classes"] == 5


def test_unknown_name_lists_the_standalone_networks(standalone):
    with pytest.raises(ValueError, match=r"tiny3d_test.*Received: arch='tiny3d_tset'"):
        architectures.parse("tiny3d_tset")


def test_trainer_builds_a_standalone_network_without_resnet_arguments(standalone):
    config = train_config.TrainConfig(arch=standalone, frames=2, image_size=8, epochs=1)
    model = trainer.build_model(config, num_classes=4)
    assert CALLS[-1]["input_shape"] == (2, 8, 8, 3)
    assert "implementation" not in CALLS[-1] and "base_filters" not in CALLS[-1]
    out = model.predict(np.zeros((1, 2, 8, 8, 3), "float32"), verbose=0)
    assert out.shape == (1, 4)
