"""Chooses between the portable keras.ops interlace and the compiled TF op.

Rules (TemporalInterlace(implementation=...)):
- "portable": always the keras.ops path (any backend, XLA, TFLite).
- "custom_op": the compiled op; raises a clear error when it is unavailable (another
  backend, no library) or when the call is being XLA-compiled (XLA has no kernel for
  it). Inside portable_only() it traces the portable path like every other choice.
- "auto": the op when the backend is TensorFlow, the op is built and loaded, the call
  is not being XLA-compiled (tf.function(jit_compile=True), model.compile(jit_compile=
  True), Keras's jit_compile="auto" on GPU) and not inside portable_only(), and the op
  is measured to be faster for that case (see prefers_custom_op); otherwise portable.
The decision is taken when the layer's call runs (or is traced), so one layer can use
the op eagerly and the portable path inside an XLA-compiled train step.
"""

import contextlib
import threading
import warnings

import keras
from keras import ops

from keras_tin.ops import portable

_state = threading.local()

IMPLEMENTATIONS = ("auto", "portable", "custom_op")


def check_implementation(implementation):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {IMPLEMENTATIONS}. Received: "
            f"implementation={implementation!r}")


@contextlib.contextmanager
def portable_only():
    """Within this context every layer traces the portable keras.ops path.

    Exports (SavedModel, TFLite, .keras) trace under it so that no artifact ever
    contains the custom op and each loads where keras_tin is not installed.
    """
    previous = getattr(_state, "portable_only", False)
    _state.portable_only = True
    try:
        yield
    finally:
        _state.portable_only = previous


def is_portable_only():
    return getattr(_state, "portable_only", False)


@contextlib.contextmanager
def export_graph():
    """portable_only(), and every TemporalConv2D traced as the literal conv(module(x)).

    The fused form conv(x) + conv_F(delta) saves copying the pass-through channels on
    TensorFlow, but a traced export would store the kernel twice (the whole kernel and
    its first-F-channels slice, folded into its own constant) and, quantized, a second
    set of per-channel scales. Exports (SavedModel, TFLite) trace under this context.
    """
    previous = getattr(_state, "export_graph", False)
    _state.export_graph = True
    try:
        with portable_only():
            yield
    finally:
        _state.export_graph = previous


def is_export_graph():
    return getattr(_state, "export_graph", False)


_xla_probe_warned = False


def in_xla_context():
    """True while TensorFlow traces code that XLA will compile.

    tf.function(jit_compile=True) (also what Keras uses for jit_compile=True) enters an
    XLAControlFlowContext on the graph it traces; nested functions inherit it through
    their outer graphs. Eager code is never XLA-compiled.
    """
    import tensorflow as tf

    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.ops import control_flow_util
        graph = tf.compat.v1.get_default_graph()
        return bool(control_flow_util.GraphOrParentsInXlaContext(graph))
    except Exception as err:  # private API moved: assume the worst, stay portable
        global _xla_probe_warned
        if not _xla_probe_warned:
            _xla_probe_warned = True
            warnings.warn(
                f"keras_tin: cannot tell whether a tf.function is XLA-compiled ({err}); "
                "the custom op is used only eagerly.", RuntimeWarning, stacklevel=2)
        return True


def custom_op_status(build_if_missing=True):
    """(available, reason) for the compiled op; builds it on first call if needed."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        return False, f"the Keras backend is {backend!r}; the op is a TensorFlow op"
    from keras_tin.ops import custom_op

    module = custom_op.load(build_if_missing=build_if_missing)
    if module is None:
        return False, custom_op.failure_reason()
    return True, f"loaded from {custom_op.loaded_path()}"


def prefers_custom_op(x, delta):
    """Whether "auto" should use the op for this call, given that it may.

    BENCHMARKS.md ("Custom op vs portable path"): on the 2-core CPU the op is at least as
    fast as the portable graph path at all 16 ResNet-50 TIN-block shapes, forward and
    forward+backward, delta and full. Single runs showed ratios below 1 only under heavy
    machine load, and focused re-measurements put the op ahead at every shape. So this
    returns True. The hook exists so that a measured loss (another machine, another
    shape) takes one line to encode.
    """
    del x, delta
    return True


def _require_custom_op():
    available, reason = custom_op_status()
    if not available:
        raise RuntimeError(
            f"implementation='custom_op' was requested but the op is unavailable: {reason}. "
            "Use implementation='auto' to fall back to the portable path.")


def _use_custom_op(implementation, x, delta):
    """The decision for one call (see module docstring)."""
    if implementation == "portable" or is_portable_only():
        return False
    if implementation == "custom_op":
        _require_custom_op()
        if in_xla_context():
            raise RuntimeError(
                "implementation='custom_op' cannot be XLA-compiled (jit_compile=True): XLA "
                "has no kernel for the TIN op. Use implementation='auto', which falls back "
                "to the portable path under XLA.")
        return True
    # "auto"
    if keras.backend.backend() != "tensorflow" or in_xla_context():
        return False
    return custom_op_status()[0] and prefers_custom_op(x, delta)


def _select(implementation, custom_name, portable_fn, delta):
    """`portable_fn`'s signature; runs custom_op.<custom_name> where _use_custom_op says."""
    check_implementation(implementation)
    if implementation == "portable":
        return portable_fn
    if implementation == "custom_op":
        _require_custom_op()  # fail at the call site that asked, before any tracing

    def apply(x, *args, **kwargs):
        if _use_custom_op(implementation, x, delta):
            from keras_tin.ops import custom_op
            return getattr(custom_op, custom_name)(x, *args, **kwargs)
        return portable_fn(x, *args, **kwargs)

    return apply


def _portable_descriptor(x, channels):
    return ops.mean(ops.cast(x[..., :channels], "float32"), axis=(1, 2))  # (N*T, F)


def descriptor_fn(implementation):
    """(x, F) -> the TIN descriptor, mean over H, W of x[..., :F] in float32 (N*T, F).

    Follows the same rules as interlace_fn: the op reads the F channels in place,
    where the portable path first materialises the slice (PERF_NOTES.md).
    """
    return _select(implementation, "channel_mean", _portable_descriptor, delta=True)


def interlace_fn(implementation):
    """A function like portable.interlace that applies the implementation's rules."""
    return _select(implementation, "interlace", portable.interlace, delta=False)


def interlace_delta_fn(implementation):
    """A function like portable.interlace_delta that applies the implementation's rules."""
    return _select(implementation, "interlace_delta", portable.interlace_delta, delta=True)


def _correlation_status():
    """(available, reason) for the compiled correlation op (TF backend, library loaded
    and holding the correlation kernels)."""
    available, reason = custom_op_status()
    if not available:
        return available, reason
    from keras_tin.ops import custom_op

    if not custom_op.has_correlation():
        return False, (f"the loaded library {custom_op.loaded_path()} has no correlation op "
                       "(built from older sources)")
    return True, reason


def correlation_fn(implementation):
    """(f1, f2, max_displacement=7) -> the correlation, with the implementation's rules.

    Same rules as interlace_fn: "portable" always keras.ops; "custom_op" the compiled
    KerasTinCorrelation op, a clear error when it is unavailable or XLA-compiled; "auto"
    the op on the TensorFlow backend when it is loaded, the call is not XLA-compiled and
    not inside portable_only()/export_graph(), else the portable path. Arguments are
    checked (keras_tin.ops.local_correlation.check_correlation_args) whichever path runs.
    """
    from keras_tin.ops import local_correlation as corr

    check_implementation(implementation)
    if implementation == "portable":
        return corr.correlation_portable
    if implementation == "custom_op":
        available, reason = _correlation_status()
        if not available:
            raise RuntimeError(
                "implementation='custom_op' was requested but the correlation op is "
                f"unavailable: {reason}. Use implementation='auto' to fall back to the "
                "portable path.")

    def apply(f1, f2, max_displacement=7):
        d = corr.check_correlation_args(f1, f2, max_displacement)
        # Symbolic Keras inputs (a functional model built outside a layer) trace keras.ops.
        if is_portable_only() or any(isinstance(f, keras.KerasTensor) for f in (f1, f2)):
            return corr.correlation_portable(f1, f2, d)
        if implementation == "custom_op":
            if in_xla_context():
                raise RuntimeError(
                    "implementation='custom_op' cannot be XLA-compiled (jit_compile=True): "
                    "XLA has no kernel for the correlation op. Use implementation='auto', "
                    "which falls back to the portable path under XLA.")
            use_op = True
        else:
            use_op = (keras.backend.backend() == "tensorflow" and not in_xla_context()
                      and _correlation_status()[0])
        if use_op:
            from keras_tin.ops import custom_op
            return custom_op.correlation(f1, f2, d)
        return corr.correlation_portable(f1, f2, d)

    return apply
