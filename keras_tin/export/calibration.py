"""Representative clips for full-integer (int8) TFLite calibration.

`export_tflite(..., quantize="int8", representative_dataset=clips)` accepts any of:
- an iterable of clips, each (frames, H, W, 3) or a batch (B, frames, H, W, 3), as NumPy
  arrays (any dtype: uint8 clips are cast one clip at a time) or tensors, on the same
  0-255 RGB scale the model takes;
- an iterable of (clips, labels) or (clips, labels, weights) tuples, such as a batched
  tf.data.Dataset from `keras_tin.data.load_dataset(..., normalization=None)`: labels are
  ignored;
- a callable returning such an iterable (TensorFlow's own representative_dataset style,
  whose items are lists [clip_batch] of one array, is accepted too).
Every clip is fed on its own (batch 1, the exported shape), up to `max_clips` clips.

Value range. A keras_tin model normalises inside (its `normalization` layer) and takes
RGB on 0-255; clips that were already normalised (mean/std, x/127.5 - 1, or [0, 1])
calibrate every activation range on the wrong inputs, and the int8 file then disagrees
with the float model on most clips (measured: 29 % top-1 agreement). With
`expected_range=(0, 255)` the observed range of the clips is checked and refused with the
range in the message (`CalibrationRangeError`) when:
- the largest value of all clips is <= NORMALISED_MAX (3.0): [0, 1], [-1, 1] and
  ImageNet mean/std clips (at most 2.64) all fall here, raw RGB of any real video does not;
- a value is below -RANGE_SLACK or above 255 + RANGE_SLACK (20): mean-subtracted
  ("caffe") clips, 16-bit frames. The slack admits the overshoot of bicubic resizing.
The first PEEK_CLIPS clips are checked before the (slow) conversion starts whenever the
source can be iterated twice (arrays, lists, tf.data datasets, callables); all clips are
checked again as they are fed.
"""

import itertools
import sys
import time

import numpy as np

NORMALISED_MAX = 3.0
RANGE_SLACK = 20.0
PEEK_CLIPS = 8


class CalibrationRangeError(ValueError):
    """The calibration clips are not on the scale the model takes."""


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


def _source(clips):
    if callable(clips) and not hasattr(clips, "__iter__"):
        return clips()
    return clips


def iter_clips(clips, clip_shape, max_clips=100):
    """Yields float32 arrays of shape (1,) + clip_shape from any accepted clip source."""
    clips = _source(clips)
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


def count_clips(clips, max_clips):
    """How many clips calibration will use when the source says its length, else None."""
    if callable(clips) and not hasattr(clips, "__iter__"):
        return None
    if isinstance(clips, np.ndarray):
        return min(max_clips, len(clips) if clips.ndim == 5 else 1)
    if isinstance(clips, (list, tuple)):
        total = 0
        for item in clips:
            batch = _clip_batch(item)
            total += batch.shape[0] if batch.ndim == 5 else 1
            if total >= max_clips:
                return max_clips
        return total
    return None


def check_range(lo, hi, expected_range, final=True, normalization=None):
    """Raises CalibrationRangeError when clips spanning [lo, hi] are not on `expected_range`.

    `final`: all clips were seen (the "everything <= NORMALISED_MAX" rule is applied to
    the first PEEK_CLIPS clips and to all clips, never to a single dark clip).
    """
    if expected_range is None:
        return
    low, high = expected_range
    what = (f"this model normalises its input itself ({normalization} mean/std) and takes "
            if normalization else "this model takes ")
    hint = (f"calibration clips span [{lo:.4g}, {hi:.4g}], but {what}RGB on the "
            f"{low:g}-{high:g} scale")
    if final and hi <= NORMALISED_MAX:
        raise CalibrationRangeError(
            f"int8 calibration refused: {hint}; these clips look normalised already. Pass "
            "raw RGB clips (keras_tin.data.load_dataset(..., normalization=None)), or "
            "multiply [0, 1] clips by 255.")
    if lo < low - RANGE_SLACK or hi > high + RANGE_SLACK:
        raise CalibrationRangeError(
            f"int8 calibration refused: {hint}. Pass raw RGB clips "
            "(keras_tin.data.load_dataset(..., normalization=None)).")


def peek_range(clips, clip_shape, expected_range, max_clips=PEEK_CLIPS, normalization=None):
    """Checks the first clips of a source that can be iterated again; (lo, hi) or None.

    One-shot iterators (generators) are not peeked: they are checked as they are fed.
    """
    if expected_range is None:
        return None
    source = clips
    if not (callable(clips) and not hasattr(clips, "__iter__")):
        try:
            if iter(clips) is clips:  # a generator / iterator: peeking would consume it
                return None
        except TypeError:
            return None
    lo, hi = np.inf, -np.inf
    for clip in itertools.islice(iter_clips(source, clip_shape, max_clips), max_clips):
        lo, hi = min(lo, float(clip.min())), max(hi, float(clip.max()))
    check_range(lo, hi, expected_range, final=True, normalization=normalization)
    return lo, hi


class Progress:
    """One log line every `every` clips (and at the end) on stderr: clips fed, seconds."""

    def __init__(self, total, max_clips, verbose, stream=None):
        self.total, self.max_clips, self.verbose = total, max_clips, verbose
        self.stream = stream or sys.stderr
        self.every = max(1, -(-(total or max_clips) // 10))  # ceil: <= 10 lines
        self.start = None
        self.count = 0
        self.lo, self.hi = np.inf, -np.inf

    def log(self, text):
        if self.verbose:
            print(text, file=self.stream, flush=True)

    def begin(self):
        self.start = time.perf_counter()
        size = f"{self.total}" if self.total is not None else f"up to {self.max_clips}"
        self.log(f"int8 calibration: running the float model on {size} clips "
                 f"(max_calibration_clips={self.max_clips}), the slow part of an int8 export")

    def update(self, clip):
        self.count += 1
        self.lo, self.hi = min(self.lo, float(clip.min())), max(self.hi, float(clip.max()))
        if self.count % self.every == 0 and self.count != self.total:
            of = f"/{self.total}" if self.total is not None else ""
            self.log(f"int8 calibration: {self.count}{of} clips, "
                     f"{time.perf_counter() - self.start:.0f} s")

    def end(self):
        self.log(f"int8 calibration: {self.count} clips in "
                 f"{time.perf_counter() - self.start:.0f} s, values in "
                 f"[{self.lo:.4g}, {self.hi:.4g}]")


def representative_dataset(clips, clip_shape, max_clips=100, input_dtype="float32",
                           expected_range=None, verbose=False, normalization=None):
    """The zero-argument generator function TFLiteConverter.representative_dataset wants.

    Clips are fed in the exported input's dtype: with input_dtype="uint8" they are
    rounded and clipped to 0-255 bytes, as a caller of that file would pass them. With
    `expected_range` the clips' value range is checked (see the module docstring); with
    `verbose` a progress line goes to stderr every tenth of the clips (and one line
    first saying how many clips are used).
    """
    def generate():
        total = count_clips(clips, max_clips)
        progress = Progress(total, max_clips, verbose)
        progress.begin()
        for clip in iter_clips(clips, clip_shape, max_clips):
            progress.update(clip)
            check_range(progress.lo, progress.hi, expected_range,
                        final=progress.count >= PEEK_CLIPS, normalization=normalization)
            if input_dtype == "uint8":
                clip = np.clip(np.round(clip), 0, 255).astype(np.uint8)
            yield [clip]
        check_range(progress.lo, progress.hi, expected_range, final=True,
                    normalization=normalization)
        progress.end()
    if max_clips < 1:
        raise ValueError(f"max_calibration_clips must be >= 1. Received: {max_clips}")
    return generate
