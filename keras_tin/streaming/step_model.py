"""Unrolls an online TSM model (trained on clips) into a per-frame step model.

The step model is a plain Keras functional model

    step([frame, state_0, ..., state_{n-1}]) -> [logits, new_state_0, ..., new_state_{n-1}]

frame: (batch, H, W, 3), RGB on 0-255 (the offline model's own input normalisation is kept).
logits: (batch, classes), the offline model's per-frame logits (before the frame average and
the classifier activation). state_i: (batch, h_i, w_i, c_i // shift_div), one per
OnlineTemporalShift, in block order: the first c_i // shift_div channels of the previous
frame's input to that block (zeros before the first frame). new_state_i: the same channels of
the current frame. Every tensor has at most 4 dimensions (TFLite GPU delegates reject 5-D).

For TSM MobileNetV2 (224 px, width 1.0) the 10 states are, in NHWC,
(1, 56, 56, 3), (1, 28, 28, 4) x2, (1, 14, 14, 8) x3, (1, 14, 14, 12) x2, (1, 7, 7, 20) x2:
the buffers of MIT's online demo (mobilenet_v2_tsm.py), transposed from NCHW.

Unrolling copies every weight of the offline model into fresh layers of the step graph, so
running step over a clip's frames reproduces the offline model's per-frame logits exactly
(tests/test_streaming.py: 1e-5), and the step model saves, loads and exports on its own.
"""

import keras
import numpy as np
from keras import ops

from keras_tin.layers.online_shift import OnlineTemporalShift
from keras_tin.layers.temporal_conv import TemporalConv2D
from keras_tin.layers.temporal_shift import TemporalShift

STATE_PREFIX = "state_"
NEW_STATE_PREFIX = "new_state_"


def _clone(layer, x, name=None):
    """A fresh copy of `layer` (same config) applied to x, holding a copy of its weights."""
    config = layer.get_config()
    if name is not None:
        config["name"] = name
    new = layer.__class__.from_config(config)
    y = new(x)
    new.set_weights(layer.get_weights())
    return y


def _plain_conv(layer, x):
    """layer (a TemporalConv2D, maybe with a temporal module) as a plain conv on x."""
    config = layer.get_config()
    config["temporal_module"] = None
    new = TemporalConv2D.from_config(config)
    y = new(x)
    new.set_weights([layer.get_weights()[0]])
    return y


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _check_online(model):
    for layer in model.layers:
        module = getattr(layer, "temporal_module", None)
        if isinstance(layer, TemporalShift) or isinstance(module, TemporalShift):
            raise ValueError(
                f"Model '{model.name}' uses the bi-directional TemporalShift (layer "
                f"'{layer.name}'), whose channels come from the next frame: it cannot run "
                "online. Build it with online=True (e.g. TSMMobileNetV2(online=True)) and "
                "train or convert that model.")
    if _layer(model, "block0_project") is None or _layer(model, "fc") is None:
        raise ValueError(
            f"build_step_model unrolls TSM MobileNetV2 models with a classifier "
            f"(TSMMobileNetV2(online=True, include_top=True)); model '{model.name}' has no "
            "'block0_project' or 'fc' layer.")
    if not any(isinstance(getattr(layer, "temporal_module", None), OnlineTemporalShift)
               for layer in model.layers):
        raise ValueError(f"Model '{model.name}' has no OnlineTemporalShift: nothing to stream. "
                         "Build it with online=True.")


def _frame_size(model, input_size):
    shape = tuple(model.inputs[0].shape)  # (batch, frames, H, W, 3)
    h, w = shape[-3], shape[-2]
    if input_size is not None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        h, w = (int(v) for v in input_size)
    if h is None or w is None:
        raise ValueError("The model takes frames of any size; pass input_size=(H, W) (the state "
                         f"shapes depend on it). Received: model input shape={shape}")
    return h, w


def build_step_model(model, input_size=None, batch_size=1, name=None):
    """Unrolls `model`, an online TSM MobileNetV2 (TSMMobileNetV2(online=True)) trained or
    converted as usual, into the step model documented in this module.

    input_size: (H, W) of the frames, needed only when the model's input size is None.
    batch_size: the step model's fixed batch (1 for TFLite export and streaming).
    """
    _check_online(model)
    h, w = _frame_size(model, input_size)
    frame = keras.Input(shape=(h, w, 3), batch_size=batch_size, name="frame")
    x = frame
    normalization = _layer(model, "normalization")
    if normalization is not None:
        x = _clone(normalization, x)
    x = _plain_conv(model.get_layer("conv1"), x)
    x = keras.layers.ReLU(6.0)(_clone(model.get_layer("bn1"), x))
    states, new_states = [], []
    index = 0
    while _layer(model, f"block{index}_project") is not None:
        block = f"block{index}"
        block_input = x
        y = x
        expand = _layer(model, block + "_expand")
        if expand is not None:
            module = expand.temporal_module
            if isinstance(module, OnlineTemporalShift):
                fold = int(y.shape[-1]) // module.shift_div
                state = keras.Input(shape=tuple(y.shape[1:3]) + (fold,), batch_size=batch_size,
                                    name=STATE_PREFIX + block)
                states.append(state)
                new_states.append(y[..., :fold])
                y = keras.layers.Concatenate(axis=-1, name=block + "_online_shift")(
                    [state, y[..., fold:]])
            y = _plain_conv(expand, y)
            y = keras.layers.ReLU(6.0)(_clone(model.get_layer(block + "_expand_bn"), y))
        y = _clone(model.get_layer(block + "_depthwise_pad"), y)
        y = _clone(model.get_layer(block + "_depthwise"), y)
        y = keras.layers.ReLU(6.0)(_clone(model.get_layer(block + "_depthwise_bn"), y))
        y = _plain_conv(model.get_layer(block + "_project"), y)
        y = _clone(model.get_layer(block + "_project_bn"), y)
        if _layer(model, block + "_add") is not None:
            y = keras.layers.Add(name=block + "_add")([block_input, y])
        x = y
        index += 1
    x = _plain_conv(model.get_layer("conv_last"), x)
    x = keras.layers.ReLU(6.0)(_clone(model.get_layer("conv_last_bn"), x))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = _clone(model.get_layer("fc"), x)
    logits = keras.layers.Identity(name="logits", dtype="float32")(logits)
    outputs = [logits] + [
        keras.layers.Identity(name=NEW_STATE_PREFIX + s.name[len(STATE_PREFIX):])(n)
        for s, n in zip(states, new_states)]
    return keras.Model([frame] + states, outputs, name=name or f"{model.name}_step")


def state_spec(step_model):
    """[(name, shape)] of the step model's state inputs, in order (shape with the batch)."""
    return [(t.name, tuple(t.shape)) for t in step_model.inputs[1:]]


def initial_state(step_model, batch_size=None, dtype="float32"):
    """The zero state (before the first frame): one NumPy array per state input.
    batch_size: for a step model built with batch_size=None (default 1 there)."""
    out = []
    for _, shape in state_spec(step_model):
        batch = shape[0] if shape[0] is not None else (batch_size or 1)
        out.append(np.zeros((batch,) + shape[1:], dtype))
    return out


def step(step_model, frame, state):
    """One frame: (logits (batch, classes) NumPy, new state list)."""
    outputs = step_model([np.asarray(frame, "float32")] + list(state), training=False)
    outputs = [ops.convert_to_numpy(o) for o in outputs]
    return outputs[0], outputs[1:]


def offline_frame_logits(model, clips):
    """The offline model's per-frame logits (batch, frames, classes): the 'fc' output
    before the frame average, in inference mode."""
    clips = np.asarray(clips, "float32")
    fc = keras.Model(model.inputs[0], model.get_layer("fc").output)
    logits = ops.convert_to_numpy(fc(clips, training=False))
    return logits.reshape(clips.shape[0], clips.shape[1], -1)


def run_clip(step_model, clip, state=None):
    """Steps through clip (frames, H, W, 3) frame by frame from `state` (zeros by default):
    returns (logits (frames, classes), final state)."""
    state = initial_state(step_model) if state is None else state
    out = []
    for frame in np.asarray(clip, "float32"):
        logits, state = step(step_model, frame[None], state)
        out.append(logits[0])
    return np.stack(out), state


class StreamingModel:
    """A step model with its state: `StreamingModel(online_model)` then `.step(frame)` per
    frame ((H, W, 3) or (1, H, W, 3) RGB 0-255) returns the logits (classes,); `.reset()`
    starts a new stream. `.state` holds the tensors documented in this module."""

    def __init__(self, model, input_size=None):
        if isinstance(model, keras.Model) and model.inputs and len(model.inputs[0].shape) == 4:
            self.step_model = model  # already a step model
        else:
            self.step_model = build_step_model(model, input_size=input_size)
        self.state_spec = state_spec(self.step_model)
        self._fn = None
        self.reset()

    def reset(self):
        self.state = initial_state(self.step_model)

    def step(self, frame):
        frame = np.asarray(frame, "float32")
        if frame.ndim == 3:
            frame = frame[None]
        expected = tuple(self.step_model.inputs[0].shape[1:])
        if tuple(frame.shape[1:]) != expected:
            raise ValueError(f"frame must have shape {expected} (or with a leading batch of 1). "
                             f"Received: shape={frame.shape}")
        if self._fn is None:
            if keras.backend.backend() == "tensorflow":  # one traced graph per stream
                import tensorflow as tf

                self._fn = tf.function(lambda *a: self.step_model(list(a), training=False))
            else:
                self._fn = lambda *a: self.step_model(list(a), training=False)
        outputs = [ops.convert_to_numpy(o) for o in self._fn(frame, *self.state)]
        self.state = outputs[1:]
        return outputs[0][0]
