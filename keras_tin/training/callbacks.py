"""The trainer's own callbacks: exact epoch metrics, the NaN guard, the data watch, and the
end-of-epoch writes of the run folder (see `keras_tin.training.run_folder` for their order).

`train` puts them in this order after the learning-rate scheduler, so that each sees the
logs the one before it fixed, and nothing is written for an epoch that a guard stopped.
"""

import collections
import math

import keras

from keras_tin.training import checks
from keras_tin.training import run_folder


class TrainMetricsFromLastBatch(keras.callbacks.Callback):
    """Epoch-end training metrics = the running values after the epoch's last batch.

    With a tf.data pipeline of unknown length (the skip-and-count pipeline filters bad
    videos, so its cardinality is unknown) Keras learns that the epoch is over by one more
    call of its train function, which fails on the empty iterator only after the metric
    counters, whose increments depend on the static batch size alone, were already
    bumped: the epoch logs then count one extra batch of zeros (top-k 0.75 where every clip
    was right). The logs after the last real batch hold the right numbers; this copies them
    into the epoch logs, before the CSV, history and checkpoint callbacks read them.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.last = None

    def on_train_batch_end(self, batch, logs=None):
        if logs:
            self.last = dict(logs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.last:
            for key, value in self.last.items():
                if key in logs:
                    logs[key] = value


class NaNGuard(keras.callbacks.Callback):
    """Stops a diverging run: raises `TrainingDiverged` naming the epoch, the batch and the
    learning rate, before anything of that epoch is written."""

    def __init__(self, lr, epochs_done):
        super().__init__()
        self.lr = lr
        self.epochs_done = epochs_done  # () -> the last finished epoch
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isfinite(loss):
            return
        try:
            current = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except Exception:  # noqa: BLE001 - the message is still useful without it
            current = float("nan")
        done = self.epochs_done()
        kept = (f"the run folder keeps epoch {done}, the last finished one; rerun the same "
                f"command (with a lower --lr) to resume from it" if done else
                "no epoch finished, so there is nothing to resume")
        raise checks.TrainingDiverged(
            f"Training diverged: the loss became {loss} at epoch {self.epoch + 1}, batch "
            f"{batch + 1} (learning rate {current:g}). Lower the learning rate (--lr "
            f"{self.lr:g} now; try {self.lr / 10:g}) or --clipnorm, and check the data and "
            f"the initial weights; {kept}.")


class DataWatch(keras.callbacks.Callback):
    """Counts the batches of each epoch; an epoch without a training (or, when there is
    validation data, a validation) batch raises `NoUsableData` with the skip report.
    Prints a line when an epoch skipped new videos or recorded new decode notes."""

    def __init__(self, errors, train_info, batch_size, val_info=None, report=None, verbose=1):
        super().__init__()
        self.errors, self.train_info, self.val_info = errors, train_info, val_info
        self.batch_size, self.report, self.verbose = batch_size, report, verbose
        self.seen = self._seen()

    def _seen(self):
        return (self.errors.num_skipped, sum(self.errors.note_counts().values()))

    def on_epoch_begin(self, epoch, logs=None):
        self.train_batches = 0
        self.val_batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.train_batches += 1

    def on_test_batch_end(self, batch, logs=None):
        self.val_batches += 1

    def on_epoch_end(self, epoch, logs=None):
        if not self.train_batches:
            raise checks.NoUsableData(self._no_batch(epoch, "training", self.train_info))
        if self.val_info is not None and not self.val_batches:
            raise checks.NoUsableData(self._no_batch(epoch, "validation", self.val_info))
        seen = self._seen()
        if seen != self.seen and self.verbose:
            print(f"Epoch {epoch + 1}: data: {self.errors.summary()}"
                  + (f" (listed in {self.report})" if self.report else
                     " (--report PATH lists the files)"))
        self.seen = seen

    def _no_batch(self, epoch, what, info):
        paths = {s.path for s in info.samples}
        skipped = [s for s in self.errors.skipped() if s["path"] in paths]
        reasons = collections.Counter(s["reason"] for s in skipped)
        total = len(info.samples)
        text = (f"No {what} batch in epoch {epoch + 1}: {len(skipped)} of {total} {what} "
                f"videos listed in {info.root} were skipped")
        if reasons:
            text += " (" + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) + ")"
        left = total - len(skipped)
        if left > 0 and what == "training":
            text += f"; the {left} left do not fill one batch of {self.batch_size}"
        elif left > 0:
            text += f"; the {left} left gave no batch"
        if self.errors.num_skipped:
            text += ("; the report lists them: " + self.report if self.report else
                     "; pass --report PATH to list them, or --on-error raise to stop at the "
                     "first bad video")
        return text + ". Nothing of this epoch was saved."


class EpochRecorder(keras.callbacks.Callback):
    """Writes an epoch's checkpoint, log row, history, best model, backup and state, in
    that order, each atomically (see `keras_tin.training.run_folder`). ``writer=False``
    (the non-chief workers of a multi-worker run) keeps the same rows and state in memory
    and writes nothing."""

    def __init__(self, folder, rows, state, monitor=None, mode="max", writer=True):
        super().__init__()
        self.writer = writer
        self.folder = folder
        self.rows = list(rows)
        self.state = dict(state)  # epochs_done, best, best_epoch, and what identifies the run
        self.monitor, self.mode = monitor, mode

    @property
    def epochs_done(self):
        return self.state.get("epochs_done", 0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        number = epoch + 1
        folder = self.folder
        row = {"epoch": epoch}
        for key, value in logs.items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        if not self.writer:
            self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
            state = dict(self.state, epochs_done=number, finished=False)
            if self.monitor is not None and run_folder.is_better(
                    row.get(self.monitor), state.get("best"), self.mode):
                state["best"], state["best_epoch"] = row[self.monitor], number
            self.state = state
            return
        folder.save_weights(self.model, folder.checkpoint_path(number))
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        folder.write_log(self.rows)
        folder.write_history(self.rows)
        state = dict(self.state, epochs_done=number, finished=False)
        if self.monitor is not None and run_folder.is_better(row.get(self.monitor),
                                                             state.get("best"), self.mode):
            folder.save_model(self.model, folder.path(run_folder.BEST))
            state["best"], state["best_epoch"] = row[self.monitor], number
        folder.save_weights(self.model, folder.backup_path(number))
        state["backup"] = f"{run_folder.BACKUP}/epoch_{number:03d}.weights.h5"
        folder.write_state(state)  # the commit
        self.state = state
        folder.prune_backups(number)
