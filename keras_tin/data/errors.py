"""Bad-input policy: skip-and-count (default) or fail fast.

Every problem found while listing or decoding a dataset goes through one
`ErrorLog`. Under ``on_error="skip"`` the sample is dropped, counted by reason
and written to an optional JSON report, so one bad file never kills an epoch;
under ``on_error="raise"`` a `DataError` naming the file is raised at once.
Notes (a clip shorter than T that was looped, container metadata that lied
about the frame count) are recorded but never drop a sample.

Each file is reported once per run: a file skipped while decoding is not opened
again in later epochs (so neither our warning nor the decoder's own native
messages repeat), and each note is logged once.

Inside a tf.data pipeline a `DataError` raised under ``on_error="raise"`` reaches
the caller as a TensorFlow error (``tf.errors.InvalidArgumentError``, since
`DataError` is a `ValueError`) whose message holds the `DataError`'s text (reason
and file). `raising_data_errors()` turns it back into the `DataError`;
`keras_tin.data.average_views` does so itself.
"""

import collections
import contextlib
import json
import logging
import os
import threading

POLICIES = ("skip", "raise")

# Reasons a sample is dropped; the report groups by these.
MISSING_FILE = "missing_file"
UNKNOWN_LABEL = "unknown_label"
UNREADABLE = "unreadable"          # cannot be opened / corrupt / truncated past use
NOT_A_FILE = "not_a_file"          # a FIFO, device or folder where a video file is expected
ZERO_FRAMES = "zero_frames"        # opens but holds no decodable frame
BAD_ANNOTATION = "bad_annotation"  # a line of an annotation file we cannot parse

# Notes: recorded, the sample is kept.
LOOPED_SHORT_CLIP = "looped_short_clip"
FRAME_COUNT_MISMATCH = "frame_count_mismatch"

logger = logging.getLogger("keras_tin.data")


def display_path(path):
    """``path`` for messages: as is, or its ``repr`` when the name is not valid UTF-8.

    Such names come back from ``os.listdir`` with surrogate escapes ("clip_\\udcff.mp4"),
    which cannot be printed, logged to a UTF-8 stream or put into a TensorFlow error.
    """
    path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return repr(path)
    return path


def _printable(text):
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class DataError(ValueError):
    """A sample that cannot be used; `path` names the file, `reason` says why.

    The message names the file (its ``repr`` when the name is not valid UTF-8).
    """

    def __init__(self, path, reason, detail=""):
        self.path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
        self.reason = reason
        self.detail = detail
        message = f"{reason}: {display_path(self.path)}"
        if detail:
            message += f" ({detail})"
        super().__init__(_printable(message))


# (message, path, reason, detail) of DataErrors raised under on_error="raise", newest last,
# so that the TensorFlow error that carried one out of a tf.data pipeline can be turned back
# into it (not the errors themselves: their tracebacks would keep decoded frames alive)
_raised = collections.deque(maxlen=64)
_raised_lock = threading.Lock()


def as_data_error(error):
    """The `DataError` behind ``error``: itself, or the one a TensorFlow error carries, or None."""
    if isinstance(error, DataError):
        return error
    message = getattr(error, "message", None)
    if not isinstance(message, str) or not type(error).__module__.startswith("tensorflow"):
        return None
    with _raised_lock:
        raised = list(_raised)
    for text, path, reason, detail in reversed(raised):
        if text in message:
            return DataError(path, reason, detail)
    return None


@contextlib.contextmanager
def raising_data_errors():
    """Raise the `DataError` itself where a tf.data pipeline raised it as a TensorFlow error.

    Example::

        with keras_tin.data.raising_data_errors():
            for clips, labels in load_dataset(..., on_error="raise"):
                ...
    """
    try:
        yield
    except Exception as e:  # noqa: BLE001 - re-raised unchanged unless it carries a DataError
        data_error = as_data_error(e)
        if data_error is None or data_error is e:
            raise
        raise data_error from e


class ErrorLog:
    """Thread-safe record of skipped samples and notes, with an optional report file.

    The report (JSON) is rewritten each time something new is recorded, so it is
    complete even if training is interrupted.
    """

    def __init__(self, policy="skip", report_path=None, max_items=10000):
        if policy not in POLICIES:
            raise ValueError(f"on_error must be one of {POLICIES}. Received: on_error={policy!r}")
        self.policy = policy
        self.report_path = None if report_path is None else os.fspath(report_path)
        self.max_items = max_items
        self._lock = threading.Lock()
        self._skipped = {}   # path -> (reason, detail, stage); a file skipped every epoch counts once
        self._notes = {}     # (path, kind) -> detail
        if self.report_path is not None:
            self.write()

    # -- recording -------------------------------------------------------
    def skip(self, error, stage):
        """Record a `DataError`; re-raise it under the fail-fast policy.

        The first record of a file logs a warning; later ones (the same file in
        later epochs) keep the first record and stay quiet.
        """
        if self.policy == "raise":
            with _raised_lock:
                _raised.append((str(error), error.path, error.reason, error.detail))
            raise error
        with self._lock:
            new = error.path not in self._skipped
            if new:
                self._skipped[error.path] = (error.reason, error.detail, stage)
        if new:
            what = error.reason + (f" ({error.detail})" if error.detail else "")
            logger.warning("skipped %s at %s: %s", display_path(error.path), stage,
                           _printable(what))
            self.write()

    def was_skipped(self, path):
        """Whether ``path`` was skipped before in this run (it is then not decoded again)."""
        with self._lock:
            return str(path) in self._skipped

    def note(self, path, kind, detail=""):
        key = (str(path), kind)
        with self._lock:
            new = key not in self._notes
            self._notes[key] = detail
        if new:
            logger.info("note on %s: %s", display_path(path),
                        _printable(kind + (f" ({detail})" if detail else "")))
            self.write()

    # -- reading ---------------------------------------------------------
    @property
    def num_skipped(self):
        return len(self._skipped)

    def counts(self):
        """Skipped samples per reason, e.g. ``{"missing_file": 2}``."""
        with self._lock:
            return dict(collections.Counter(r for r, _, _ in self._skipped.values()))

    def note_counts(self):
        with self._lock:
            return dict(collections.Counter(kind for _, kind in self._notes))

    def skipped(self):
        """List of ``{"path", "reason", "detail", "stage"}`` dicts."""
        with self._lock:
            return [{"path": p, "reason": r, "detail": d, "stage": s}
                    for p, (r, d, s) in self._skipped.items()]

    def summary(self):
        counts = self.counts()
        if not counts and not self._notes:
            return "no bad input"
        parts = [f"{n} {reason}" for reason, n in sorted(counts.items())]
        text = f"skipped {sum(counts.values())} samples" + (f" ({', '.join(parts)})" if parts else "")
        notes = self.note_counts()
        if notes:
            text += "; notes: " + ", ".join(f"{n} {k}" for k, n in sorted(notes.items()))
        return text

    def to_dict(self):
        with self._lock:
            skipped = [{"path": p, "reason": r, "detail": d, "stage": s}
                       for p, (r, d, s) in list(self._skipped.items())[:self.max_items]]
            notes = [{"path": p, "kind": k, "detail": d}
                     for (p, k), d in list(self._notes.items())[:self.max_items]]
            counts = dict(collections.Counter(r for r, _, _ in self._skipped.values()))
            note_counts = dict(collections.Counter(k for _, k in self._notes))
        return {"policy": self.policy, "num_skipped": sum(counts.values()),
                "skipped_by_reason": counts, "notes_by_kind": note_counts,
                "skipped": skipped, "notes": notes}

    def write(self, path=None):
        path = path or self.report_path
        if path is None:
            return
        data = self.to_dict()
        tmp = f"{path}.tmp{threading.get_ident()}"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)  # atomic: a reader never sees half a report
