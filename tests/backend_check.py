"""Run under KERAS_BACKEND=jax|torch by test_backends.py: the portable path vs NumPy."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
from keras import ops  # noqa: E402

from keras_tin import applications  # noqa: E402
from keras_tin import layers  # noqa: E402
from reference import temporal_interlace_np  # noqa: E402
from reference import temporal_shift_np  # noqa: E402

assert keras.backend.backend() == os.environ["KERAS_BACKEND"], keras.backend.backend()
frames = 4
rng = np.random.default_rng(0)
x = rng.normal(size=(2 * frames, 5, 6, 32)).astype("float32")
tin = layers.TemporalInterlace(frames)
tin.build(x.shape)
for v in tin.weights:
    v.assign(rng.normal(scale=0.7, size=v.shape).astype("float32"))
params = {v.name: np.asarray(ops.convert_to_numpy(v), np.float64) for v in tin.weights}
err_tin = np.abs(ops.convert_to_numpy(tin(x)) - temporal_interlace_np(x, frames, params)).max()
err_tsm = np.abs(ops.convert_to_numpy(layers.TemporalShift(frames)(x))
                 - temporal_shift_np(x, frames)).max()
inputs = keras.Input((frames, 16, 16, 3))
h = layers.FoldFrames(frames)(inputs)
h = layers.TemporalConv2D(16, 3, 1, 1)(h)
h = layers.TemporalConv2D(16, 1, temporal_module=layers.TemporalInterlace(frames))(h)
h = keras.layers.GlobalAveragePooling2D()(h)
h = layers.FrameConsensus(frames)(keras.layers.Dense(3)(h))
small = keras.Model(inputs, keras.layers.Softmax()(h))
small.compile("sgd", "sparse_categorical_crossentropy")
clips = rng.uniform(0, 255, size=(2, frames, 16, 16, 3)).astype("float32")
loss = small.fit(clips, np.array([0, 2]), epochs=2, verbose=0).history["loss"][-1]
model = applications.TINResNet18(frames=frames, input_shape=(frames, 32, 32, 3), classes=3,
                                 base_filters=16)
probs = ops.convert_to_numpy(model(np.repeat(np.repeat(clips, 2, 2), 2, 3), training=False))
print(f"RESULT tin={err_tin:.3g} tsm={err_tsm:.3g} loss={loss:.4f} "
      f"probsum={probs.sum(axis=1).min():.6f}")
assert err_tin < 1e-5 and err_tsm == 0 and np.isfinite(loss)
assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
