"""The run folder of `train`: files written atomically, in an order a kill cannot break.

At the end of epoch N (1-based) the trainer writes, in this order:

  1. ``checkpoints/epoch_NNN.weights.h5``  the model (and optimizer) after epoch N
  2. ``log.csv``                           one row per epoch 1..N (rewritten whole)
  3. ``history.json``                      the same numbers, one list per metric
  4. ``best.keras``                        only when the monitored metric improved
  5. ``backup/epoch_NNN.weights.h5``       the resume point (model and optimizer)
  6. ``state.json``                        the commit: epochs done, best value/epoch, backup

and at the end of the run ``model.keras`` and ``state.json`` (finished), then removes
``backup/``. Every file goes to a temporary file in the same folder, is flushed and
fsynced, and is renamed over the old one (`os.replace`), so the old file or the new one
is there, never half of one. ``state.json`` is the commit point: killed anywhere before
it, a rerun resumes after epoch N-1 and redoes epoch N, rewriting 1-5 (and putting back
the best model of epochs 1..N-1 if the killed attempt had replaced it); killed after it,
a rerun goes on with epoch N+1. A rerun of a finished run trains nothing.

Test hooks (environment variables, read when a run starts):
  ``KERAS_TIN_FAULT_AFTER_WRITE="K"`` ends the process with `os._exit` (as ``kill -9``
  would, nothing flushed or cleaned up) right after the K-th file the run writes;
  ``"K:raise"`` raises `SimulatedKill` (a BaseException) there instead, for tests that
  stay in one process. ``KERAS_TIN_WRITE_TRACE=PATH`` appends the name of every file
  written, one per line.
"""

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil

STATE = "state.json"
LOG = "log.csv"
HISTORY = "history.json"
BEST = "best.keras"
FINAL = "model.keras"
CHECKPOINTS = "checkpoints"
BACKUP = "backup"
TMP_PREFIX = ".tmp-"
FORMAT = 1

FAULT_ENV = "KERAS_TIN_FAULT_AFTER_WRITE"
TRACE_ENV = "KERAS_TIN_WRITE_TRACE"
KILLED_EXIT_CODE = 137  # what a shell reports for a process ended by SIGKILL

# fields that decide the shape of the saved weights: a resume with other values cannot load
MODEL_FIELDS = ("temporal", "depth", "base_filters", "frames", "multilabel", "dataset")

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.weights\.h5$")


class SimulatedKill(BaseException):
    """Raised by the ``KERAS_TIN_FAULT_AFTER_WRITE="K:raise"`` hook (tests only)."""


class _Faults:
    """Counts the files a run writes; applies the test hooks."""

    def __init__(self):
        spec = os.environ.get(FAULT_ENV, "")
        self.after, self.mode = None, "exit"
        if spec:
            count, _, mode = spec.partition(":")
            self.after, self.mode = int(count), (mode or "exit")
        self.trace = os.environ.get(TRACE_ENV) or None
        self.count = 0

    def wrote(self, path):
        self.count += 1
        if self.trace:
            with open(self.trace, "a", encoding="utf-8") as f:
                f.write(f"{self.count} {path}\n")
        if self.after is not None and self.count == self.after:
            if self.mode == "raise":
                raise SimulatedKill(f"simulated kill after write {self.count}: {path}")
            os._exit(KILLED_EXIT_CODE)


_faults = None


def _current_faults():
    global _faults
    if _faults is None:
        _faults = _Faults()
    return _faults


def start_counting():
    """Resets the write counter and re-reads the test hooks (called when a run starts)."""
    global _faults
    _faults = _Faults()


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path):
    """A temporary name beside ``path`` that keeps its suffix (Keras checks .keras/.weights.h5)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{name}")


def atomic_save(path, write):
    """``write(tmp)`` writes the file; it then replaces ``path`` in one step."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)
    _current_faults().wrote(os.path.basename(path) if folder == "." else path)


def write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    atomic_save(path, write)


def remove_temporaries(*folders):
    """Deletes the temporary files a killed run left behind."""
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))


def epoch_files(folder):
    """``{epoch: path}`` of the ``epoch_NNN.weights.h5`` files in ``folder``."""
    found = {}
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            match = _EPOCH_FILE.match(name)
            if match:
                found[int(match.group(1))] = os.path.join(folder, name)
    return found


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_log(path):
    """The rows of a log.csv as ``[{"epoch": int, metric: float or None, ...}]``; [] if none."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            try:
                epoch = int(row.pop("epoch"))
            except (KeyError, TypeError, ValueError):
                continue
            rows.append({"epoch": epoch, **{k: _number(v) for k, v in row.items() if k}})
    return rows


def format_log(rows):
    keys = sorted({k for row in rows for k in row if k != "epoch"})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for row in rows:
        writer.writerow([row["epoch"], *("NA" if row.get(k) is None else repr(float(row[k]))
                                         for k in keys)])
    return out.getvalue()


def history_of(rows):
    """``{metric: [value per epoch]}`` from log rows (what history.json holds)."""
    keys = sorted({k for row in rows for k in row if k != "epoch"})
    return {k: [row.get(k) for row in rows] for k in keys}


class RunFolder:
    """Paths, the committed state, and every write of one run folder."""

    def __init__(self, output_dir):
        self.root = os.fspath(output_dir)
        self.checkpoints = os.path.join(self.root, CHECKPOINTS)
        self.backup = os.path.join(self.root, BACKUP)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def checkpoint_path(self, epoch):
        return os.path.join(self.checkpoints, f"epoch_{epoch:03d}.weights.h5")

    def backup_path(self, epoch):
        return os.path.join(self.backup, f"epoch_{epoch:03d}.weights.h5")

    # -- state -----------------------------------------------------------
    def read_state(self):
        path = self.path(STATE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {path} ({e}); it is written atomically, so another "
                             "program changed it. Remove it to start this run folder afresh, "
                             "or use another --output-dir.") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{path} is not a keras-tin run state (format {FORMAT}). "
                             "Use another --output-dir.")
        return state

    def write_state(self, state):
        write_text(self.path(STATE), json.dumps({"format": FORMAT, **state}, indent=2))

    # -- writes ------------------------------------------------------------
    def save_weights(self, model, path):
        atomic_save(path, lambda tmp: model.save_weights(tmp))

    def save_model(self, model, path):
        """model.save, with the run's class names (labels.txt) in the file's keras_tin
        metadata, so they travel with best.keras/model.keras (keras_tin.export.read_metadata)."""
        def write(tmp):
            model.save(tmp)
            names = self.class_names()
            if names and len(names) == model.output_shape[-1]:
                from keras_tin.export.metadata import model_metadata
                from keras_tin.export.metadata import write_keras_metadata
                write_keras_metadata(tmp, model_metadata(model, names))

        atomic_save(path, write)

    def class_names(self):
        """The names of labels.txt, or None before it is written."""
        path = self.path("labels.txt")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]

    def write_log(self, rows):
        write_text(self.path(LOG), format_log(rows))

    def write_history(self, rows):
        history = history_of(rows)
        write_text(self.path(HISTORY), json.dumps(history, indent=2))

    def prune_backups(self, keep_epoch):
        for epoch, path in epoch_files(self.backup).items():
            if epoch != keep_epoch:
                with contextlib.suppress(OSError):
                    os.remove(path)

    def remove_backup(self):
        shutil.rmtree(self.backup, ignore_errors=True)


def is_better(value, best, mode="max"):
    """Strict improvement, as Keras' ModelCheckpoint: NaN never improves; None is no best yet."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best
