"""Portable (keras.ops) implementation of TIN's differentiable temporal interlace.

The fractional, zero-filled temporal shift of each channel group is written as a
(T x T) interpolation matrix per clip and group, applied with one batched matmul:

    K[n, g, t, s] = w[n, t, g] * ((1 - a) [t - s == k] + a [t - s == k + 1]),
    k = floor(b[n, g]),  a = b[n, g] - k.

Using floor/indicator masks rather than the tent max(0, 1 - |t - s - b|) keeps
the offset gradient equal to docs/TIN_SPEC.md's (X[t-k-1] - X[t-k]) also at integer
offsets, where the tent's autodiff gradient would be zero. Everything here is
keras.ops, so it runs under XLA, on the TF, JAX and PyTorch backends, and lowers to
TFLite builtins (matmul, transpose, reshape, elementwise).
"""

from keras import ops
from keras.backend import standardize_dtype

NUM_GROUPS = 4


def mirror_groups(offsets2, weights2):
    """Base-group offsets (N, 2) and weights (N, T, 2) -> 4 groups (the reverse offsets)."""
    offsets = ops.concatenate([offsets2, -offsets2], axis=-1)  # (N, 4)
    weights = ops.concatenate([weights2, weights2], axis=-1)  # (N, T, 4)
    return offsets, weights


def interpolation_matrix(offsets, weights, frames, subtract_identity=False):
    """(N, 4) offsets and (N, T, 4) weights -> (N, 4, T, T) float32 (or float64) matrices.

    With subtract_identity, returns K - I so that K @ X - X (the change the
    interlace makes) comes out of the same matmul.
    """
    # float32 under mixed precision (a is a sub-frame fraction); float64 stays float64
    # so that numerical gradient checks can be tight.
    dtype = "float64" if standardize_dtype(offsets.dtype) == "float64" else "float32"
    offsets = ops.cast(offsets, dtype)
    weights = ops.cast(weights, dtype)
    # The masks compare integers as int32, not floats: an int8 TFLite export quantizes
    # every float tensor, and a quantized k or t - s is no longer an exact integer, so a
    # float equality silently misses. int32 tensors are never quantized.
    steps = ops.arange(frames, dtype="int32")
    lag = steps[:, None] - steps[None, :]  # (T, T): t - s
    k = ops.stop_gradient(ops.floor(offsets))[:, :, None, None]  # (N, 4, 1, 1)
    a = offsets[:, :, None, None] - k
    k_int = ops.cast(k, "int32")
    hit0 = ops.cast(ops.equal(lag, k_int), dtype)  # (N, 4, T, T)
    hit1 = ops.cast(ops.equal(lag, k_int + 1), dtype)
    mat = (1.0 - a) * hit0 + a * hit1
    mat = mat * ops.transpose(weights, (0, 2, 1))[:, :, :, None]  # weight of output step t
    if subtract_identity:
        mat = mat - ops.eye(frames, dtype=dtype)
    return mat


def apply_interpolation(xf, mat, frames):
    """xf (N*T, H, W, F) with F = 4 groups; mat (N, 4, T, T) -> (N*T, H, W, F)."""
    shape = ops.shape(xf)
    h, w, f = shape[1], shape[2], shape[3]
    gsize = f // NUM_GROUPS
    x5 = ops.reshape(xf, (-1, frames, h * w, NUM_GROUPS, gsize))  # (N, T, HW, 4, F/4)
    x5 = ops.transpose(x5, (0, 3, 1, 2, 4))  # (N, 4, T, HW, F/4)
    x5 = ops.reshape(x5, (-1, NUM_GROUPS, frames, h * w * gsize))  # (N, 4, T, HW*F/4)
    y = ops.matmul(ops.cast(mat, xf.dtype), x5)  # (N, 4, T, HW*F/4)
    y = ops.reshape(y, (-1, NUM_GROUPS, frames, h * w, gsize))
    y = ops.transpose(y, (0, 2, 3, 1, 4))  # (N, T, HW, 4, F/4)
    return ops.reshape(y, (-1, h, w, f))  # (N*T, H, W, F)


def interlace(x, offsets, weights, frames, shift_div=4):
    """Full TIN interlace: the first C // shift_div channels shifted and weighted.

    x (N*T, H, W, C); offsets (N, 4); weights (N, T, 4). Returns x's shape.
    """
    f = x.shape[-1] // shift_div
    mat = interpolation_matrix(offsets, weights, frames)
    z = apply_interpolation(x[..., :f], mat, frames)
    return ops.concatenate([z, x[..., f:]], axis=-1)


def interlace_delta(x, offsets, weights, frames, shift_div=4):
    """Z - X_F: what the interlace changes, on the first C // shift_div channels only.

    A following linear map W (the block's 1x1 conv) then gives
    W(interlace(x)) = W(x) + W[:F](interlace_delta(x)), which never copies the
    3/4 pass-through channels (see PERF_NOTES.md).
    """
    f = x.shape[-1] // shift_div
    mat = interpolation_matrix(offsets, weights, frames, subtract_identity=True)
    return apply_interpolation(x[..., :f], mat, frames)


def temporal_shift(x, frames, shift_div=8):
    """TSM: channels [0, fold) from frame t+1, [fold, 2 fold) from t-1, zero-filled."""
    shape = ops.shape(x)
    h, w, c = shape[1], shape[2], shape[3]
    fold = c // shift_div
    x5 = ops.reshape(x, (-1, frames, h, w, c))  # (N, T, H, W, C)
    zero = ops.zeros_like(x5[:, :1, :, :, :fold])
    future = ops.concatenate([x5[:, 1:, :, :, :fold], zero], axis=1)
    past = ops.concatenate([zero, x5[:, :-1, :, :, fold:2 * fold]], axis=1)
    out = ops.concatenate([future, past, x5[..., 2 * fold:]], axis=-1)
    return ops.reshape(out, (-1, h, w, c))  # (N*T, H, W, C)


def temporal_shift_delta(x, frames, shift_div=8):
    """TSM's change on its first 2 * fold channels (see interlace_delta)."""
    shape = ops.shape(x)
    h, w, c = shape[1], shape[2], shape[3]
    fold = c // shift_div
    x5 = ops.reshape(x[..., :2 * fold], (-1, frames, h, w, 2 * fold))  # (N, T, H, W, 2 fold)
    zero = ops.zeros_like(x5[:, :1, :, :, :fold])
    future = ops.concatenate([x5[:, 1:, :, :, :fold], zero], axis=1)
    past = ops.concatenate([zero, x5[:, :-1, :, :, fold:]], axis=1)
    out = ops.concatenate([future, past], axis=-1) - x5
    return ops.reshape(out, (-1, h, w, 2 * fold))
