"""Local correlation (cost volume) of two feature maps: MotionSqueeze's matching step.

    out[b, y, x, (dy + d) * (2d + 1) + (dx + d)] = sum_c f1[b, y, x, c] * f2[b, y + dy, x + dx, c]

for dy, dx in [-d, d], zero where (y + dy, x + dx) falls outside the image. This is
Pinard's SpatialCorrelationSampler(kernel_size=1, patch_size=2d+1, stride=1, padding=0)
(spatial-correlation-sampler correlation.cpp) with its (B, P, P, H, W) output moved to
channels-last and flattened as ph * P + pw. No 1/C normalisation and no ReLU: the
MotionSqueeze layer applies those (docs: /work/shared/ZOO_SPEC.md section 1, step 3).

`correlation(f1, f2, max_displacement=7, implementation="auto")` chooses between the
portable keras.ops path below and the compiled TensorFlow op (keras_tin.ops.custom_op)
with the rules of keras_tin.ops.dispatch (see correlation_fn there).

The portable path pads f2 by d with zeros; with static H, W it computes, per vertical
shift, one batched matmul of f1's rows with f2's padded rows and reads the band of
2d + 1 horizontal shifts out of it (_banded_rows); with dynamic H, W it takes the
(2d+1)**2 shifted slices (StridedSlice + Mul + Sum). Both are TFLite builtins only,
run under XLA and on the TensorFlow, JAX and PyTorch backends; gradients come from
autodiff.
"""

from keras import ops


def _static_dim(x, axis):
    shape = getattr(x, "shape", None)
    if shape is None:
        return None
    dim = shape[axis]
    return None if dim is None else int(dim)


def check_correlation_args(f1, f2, max_displacement):
    """Raises a ValueError quoting the bad value when the arguments are unusable."""
    if isinstance(max_displacement, bool) or not isinstance(max_displacement, int):
        try:
            import numpy as np
            ok = isinstance(max_displacement, np.integer)
        except ImportError:  # pragma: no cover
            ok = False
        if not ok:
            raise ValueError(
                "max_displacement must be a non-negative int. Received: "
                f"max_displacement={max_displacement!r} ({type(max_displacement).__name__})")
    if max_displacement < 0:
        raise ValueError("max_displacement must be a non-negative int. Received: "
                         f"max_displacement={max_displacement!r}")
    for name, f in (("f1", f1), ("f2", f2)):
        rank = len(f.shape)
        if rank != 4:
            raise ValueError(f"correlation expects {name} of rank 4 (B, H, W, C), channels-last. "
                             f"Received: {name}.shape={tuple(f.shape)}")
    for axis in range(4):
        a, b = _static_dim(f1, axis), _static_dim(f2, axis)
        if a is not None and b is not None and a != b:
            raise ValueError("correlation expects f1 and f2 of the same shape (B, H, W, C). "
                             f"Received: f1.shape={tuple(f1.shape)}, f2.shape={tuple(f2.shape)}")
    return int(max_displacement)


def correlation_portable(f1, f2, max_displacement=7):
    """The keras.ops correlation: (B, H, W, C) x2 -> (B, H, W, (2d+1)**2), f1's dtype."""
    d = check_correlation_args(f1, f2, max_displacement)
    f1 = ops.convert_to_tensor(f1)
    f2 = ops.cast(ops.convert_to_tensor(f2), f1.dtype)
    if d == 0:
        return ops.sum(f1 * f2, axis=-1, keepdims=True)
    size = 2 * d + 1
    height, width = _static_dim(f1, 1), _static_dim(f1, 2)
    padded = ops.pad(f2, [[0, 0], [d, d], [d, d], [0, 0]])
    if height is None or width is None:
        return _shifted_slices(f1, padded, d)
    return _banded_rows(f1, padded, d, height, width)


def _shifted_slices(f1, padded, d):
    """Any H, W: (2d+1)**2 StridedSlice + Mul + Sum, stacked on the last axis."""
    size = 2 * d + 1
    shape = ops.shape(f1)
    height, width = shape[1], shape[2]
    outs = []
    for dy in range(size):
        for dx in range(size):
            window = padded[:, dy:dy + height, dx:dx + width]
            outs.append(ops.sum(f1 * window, axis=-1))
    return ops.stack(outs, axis=-1)


def _banded_rows(f1, padded, d, height, width):
    """Static H, W: per vertical shift dy one batched matmul of each image row of f1
    with the padded row y + dy of f2, m[b, y, x, u] = <f1[b, y, x], f2pad[b, y + dy, u]>
    for all u in [0, W + 2d), then the band u = x + dx (dx in [0, 2d]) read by the
    skew trick: flattened, row x of m starts at x (W + 2d), so reading W rows of length
    W + 2d + 1 from the flat (zero-padded) array starts row x at x (W + 2d + 1), i.e.
    at column x. Matmul, Transpose, Pad, Reshape, StridedSlice: TFLite builtins; the
    matmul does (W + 2d) / (2d + 1) times the needed MACs but runs at BLAS speed (3-9x
    faster than the 225 slices forward and backward on the CPU, benchmarks/
    bench_correlation_op.py)."""
    size = 2 * d + 1
    span = width + 2 * d
    rows = []
    for dy in range(size):
        band = padded[:, dy:dy + height]  # (B, H, W + 2d, C)
        m = ops.matmul(f1, ops.transpose(band, (0, 1, 3, 2)))  # (B, H, W, W + 2d)
        flat = ops.reshape(m, (-1, height, width * span))
        flat = ops.pad(flat, [[0, 0], [0, 0], [0, width]])
        skew = ops.reshape(flat[:, :, :width * (span + 1)], (-1, height, width, span + 1))
        rows.append(skew[..., :size])  # (B, H, W, 2d + 1): dx = 0..2d
    return ops.concatenate(rows, axis=-1)

def correlation(f1, f2, max_displacement=7, implementation="auto"):
    """Local correlation of f1 with f2 over displacements in [-d, d]^2 (module docstring).

    f1, f2: (B, H, W, C) channels-last, same shape. Returns (B, H, W, (2d+1)**2) with
    channel (dy + d) * (2d + 1) + (dx + d). implementation: "auto", "portable" or
    "custom_op" (keras_tin.ops.dispatch rules).
    """
    from keras_tin.ops import dispatch

    return dispatch.correlation_fn(implementation)(f1, f2, max_displacement)
