"""Independent NumPy oracles of the temporal modules in docs/TIN_SPEC.md.

Written with explicit loops over clips, groups and frames, the way the spec
reads, so they share no code or vectorisation trick with keras_tin.
"""

import math

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def conv1d_same(x, kernel, bias):
    """x (N, T, Cin), kernel (3, Cin, Cout): zero-padded 'same' conv over T."""
    n, t, _ = x.shape
    out = np.zeros((n, t, kernel.shape[2]), np.float64)
    for i in range(t):
        for k in range(3):
            s = i + k - 1
            if 0 <= s < t:
                out[:, i] += x[:, s] @ kernel[k]
    return out + bias


def tin_offsets_weights(x, frames, params, shift_div=4):
    """Returns per-group offsets (N, 4) and weights (N, T, 4)."""
    nt, _, _, c = x.shape
    n = nt // frames
    f = c // shift_div
    desc = x[..., :f].astype(np.float64).mean(axis=(1, 2)).reshape(n, frames, f)
    z = conv1d_same(desc, params["offset_conv_kernel"], params["offset_conv_bias"])[..., 0]
    z = np.maximum(z @ params["offset_fc1_kernel"] + params["offset_fc1_bias"], 0.0)
    z = z @ params["offset_fc2_kernel"] + params["offset_fc2_bias"]
    o = 4.0 * (sigmoid(z) - 0.5)  # (N, 2)
    w = 2.0 * sigmoid(conv1d_same(desc, params["weight_conv_kernel"], params["weight_conv_bias"]))
    offsets = np.stack([o[:, 0], o[:, 1], -o[:, 0], -o[:, 1]], axis=1)
    weights = np.stack([w[..., 0], w[..., 1], w[..., 0], w[..., 1]], axis=2)
    return offsets, weights


def interlace_np(x, frames, offsets, weights, shift_div=4):
    """The fractional zero-filled shift + weighting of docs/TIN_SPEC.md.

    x (N*T, H, W, C); offsets (N, 4); weights (N, T, 4).
    """
    nt, h, w_, c = x.shape
    n = nt // frames
    f = c // shift_div
    gsize = f // 4
    x64 = x.astype(np.float64).reshape(n, frames, h, w_, c)
    out = x64.copy()
    for b in range(n):
        for g in range(4):
            off = offsets[b, g]
            k = math.floor(off)
            a = off - k
            sl = slice(g * gsize, (g + 1) * gsize)
            for t in range(frames):
                acc = np.zeros((h, w_, gsize))
                s0, s1 = t - k, t - k - 1
                if 0 <= s0 < frames:
                    acc += (1 - a) * x64[b, s0, :, :, sl]
                if 0 <= s1 < frames:
                    acc += a * x64[b, s1, :, :, sl]
                out[b, t, :, :, sl] = weights[b, t, g] * acc
    return out.reshape(nt, h, w_, c)


def temporal_interlace_np(x, frames, params, shift_div=4):
    offsets, weights = tin_offsets_weights(x, frames, params, shift_div)
    return interlace_np(x, frames, offsets, weights, shift_div)


def temporal_shift_np(x, frames, shift_div=8):
    """TSM: [0, fold) from t+1, [fold, 2 fold) from t-1, zero at borders."""
    nt, h, w, c = x.shape
    n = nt // frames
    fold = c // shift_div
    x5 = x.reshape(n, frames, h, w, c)
    out = x5.copy()
    for t in range(frames):
        out[:, t, ..., :fold] = x5[:, t + 1, ..., :fold] if t + 1 < frames else 0
        out[:, t, ..., fold:2 * fold] = x5[:, t - 1, ..., fold:2 * fold] if t >= 1 else 0
    return out.reshape(nt, h, w, c)
