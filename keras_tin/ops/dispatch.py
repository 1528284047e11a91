"""Chooses between the portable keras.ops interlace and the compiled TF op.

Only the portable path exists until the custom op is built (issue 3); the
"custom_op" choice then raises a clear error instead of silently falling back.
"""

import contextlib
import threading

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


def custom_op_status():
    """(available, reason) for the compiled op."""
    return False, "the custom TensorFlow op is not part of this build"


def _require_custom_op():
    available, reason = custom_op_status()
    if not available:
        raise RuntimeError(
            f"implementation='custom_op' was requested but the op is unavailable: {reason}. "
            "Use implementation='auto' to fall back to the portable path.")


def interlace_fn(implementation):
    if implementation == "custom_op":
        _require_custom_op()
    return portable.interlace


def interlace_delta_fn(implementation):
    if implementation == "custom_op":
        _require_custom_op()
    return portable.interlace_delta
