"""Bad-input policy: skip-and-count (default) or fail fast.

Every problem found while listing or decoding a dataset goes through one
`ErrorLog`. Under ``on_error="skip"`` the sample is dropped, counted by reason
and written to an optional JSON report, so one bad file never kills an epoch;
under ``on_error="raise"`` a `DataError` naming the file is raised at once.
Notes (a clip shorter than T that was looped, container metadata that lied
about the frame count) are recorded but never drop a sample.
"""

import collections
import json
import logging
import os
import threading

POLICIES = ("skip", "raise")

# Reasons a sample is dropped; the report groups by these.
MISSING_FILE = "missing_file"
UNKNOWN_LABEL = "unknown_label"
UNREADABLE = "unreadable"          # cannot be opened / corrupt / truncated past use
ZERO_FRAMES = "zero_frames"        # opens but holds no decodable frame
BAD_ANNOTATION = "bad_annotation"  # a line of an annotation file we cannot parse

# Notes: recorded, the sample is kept.
LOOPED_SHORT_CLIP = "looped_short_clip"
FRAME_COUNT_MISMATCH = "frame_count_mismatch"

logger = logging.getLogger("keras_tin.data")


class DataError(ValueError):
    """A sample that cannot be used; `path` names the file, `reason` says why."""

    def __init__(self, path, reason, detail=""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        message = f"{reason}: {self.path}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


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
        """Record a `DataError`; re-raise it under the fail-fast policy."""
        if self.policy == "raise":
            raise error
        with self._lock:
            new = error.path not in self._skipped
            self._skipped[error.path] = (error.reason, error.detail, stage)
        if new:
            logger.warning("skipped %s at %s: %s", error.path, stage, error.reason
                           + (f" ({error.detail})" if error.detail else ""))
            self.write()

    def note(self, path, kind, detail=""):
        key = (str(path), kind)
        with self._lock:
            new = key not in self._notes
            self._notes[key] = detail
        if new:
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
