"""Online (streaming) recognition with online TSM: a model trained on clips with the causal
shift (TSMMobileNetV2(online=True)) unrolled into a per-frame step model with explicit state.

    model = keras_tin.applications.TSMMobileNetV2(online=True, ...)   # train with model.fit
    stream = keras_tin.streaming.StreamingModel(model)
    for frame in frames:                                 # (H, W, 3) RGB 0-255
        logits = stream.step(frame)

See keras_tin.streaming.step_model for the state tensors.
"""

from keras_tin.streaming.step_model import StreamingModel
from keras_tin.streaming.step_model import build_step_model
from keras_tin.streaming.step_model import initial_state
from keras_tin.streaming.step_model import offline_frame_logits
from keras_tin.streaming.step_model import run_clip
from keras_tin.streaming.step_model import state_spec
from keras_tin.streaming.step_model import step
from keras_tin.streaming.smoothing import LogitAverager
from keras_tin.streaming.smoothing import MITDemoSmoother
