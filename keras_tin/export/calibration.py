"""Representative clips for full-integer (int8) TFLite calibration.

`export_tflite(..., quantize="int8", representative_dataset=clips)` accepts any of:
- an iterable of clips, each (frames, H, W, 3) or a batch (B, frames, H, W, 3), as NumPy
  arrays or tensors, on the same 0-255 RGB scale the model takes;
- an iterable of (clips, labels) or (clips, labels, weights) tuples, such as a batched
  tf.data.Dataset from `keras_tin.data.load_dataset(...)`: labels are ignored;
- a callable returning such an iterable (TensorFlow's own representative_dataset style,
  whose items are lists [clip_batch] of one array, is accepted too).
Every clip is fed on its own (batch 1, the exported shape), up to `max_clips` clips.
"""

import numpy as np


def _as_array(x):
    if hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x)


def _clip_batch(item):
    """The clip tensor of one dataset element: a clip, a batch, or (clips, labels, ...)."""
    if isinstance(item, dict):
        for key in ("clips", "clip", "video", "inputs"):
            if key in item:
                return _as_array(item[key])
        raise ValueError(f"Calibration item is a dict without a 'clips' key: {sorted(item)}")
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError("Calibration item is an empty tuple/list.")
        return _clip_batch(item[0])
    return _as_array(item)


def iter_clips(clips, clip_shape, max_clips=100):
    """Yields float32 arrays of shape (1,) + clip_shape from any accepted clip source."""
    if callable(clips) and not hasattr(clips, "__iter__"):
        clips = clips()
    clip_shape = tuple(clip_shape)
    count = 0
    for item in clips:
        batch = _clip_batch(item)
        if batch.shape == clip_shape:
            batch = batch[None]  # (1, T, H, W, 3)
        if batch.ndim != 5 or tuple(batch.shape[1:]) != clip_shape:
            raise ValueError(
                f"Calibration clips must have shape {clip_shape} or (batch,) + {clip_shape} "
                f"(the exported model's input). Received: shape={batch.shape}")
        for clip in batch:
            yield clip[None].astype(np.float32)  # (1, T, H, W, 3)
            count += 1
            if count >= max_clips:
                return
    if count == 0:
        raise ValueError("The representative dataset yielded no clips.")


def representative_dataset(clips, clip_shape, max_clips=100, input_dtype="float32"):
    """The zero-argument generator function TFLiteConverter.representative_dataset wants.

    Clips are fed in the exported input's dtype: with input_dtype="uint8" they are
    rounded and clipped to 0-255 bytes, as a caller of that file would pass them.
    """
    def generate():
        for clip in iter_clips(clips, clip_shape, max_clips):
            if input_dtype == "uint8":
                clip = np.clip(np.round(clip), 0, 255).astype(np.uint8)
            yield [clip]
    return generate
