"""Model files that survive a kill, the callbacks that write them, and restoring a model from them for --resume.

After every epoch RunRecorder saves, in this order: (1) the weights and optimizer state to
models/<run>.backup/epoch-N.weights.h5, (2) the history pickle and the run record (status "running"), then
(3) deletes the older backup. Whenever the process dies, even by SIGKILL, the record's epoch count has a matching
backup, and --resume continues from that epoch.

Every save goes through fmnist.run.files: whatever moment the process dies at, the path holds the previous
complete file or the new one, never a torn one. A kill mid-save can leave the hidden temporary file behind
(`.NAME.<random>.tmp<ending>`); --resume removes those of its own files, and no other run's.

This module imports Keras: import it only once the command line has been parsed.
"""

import math
import time
from pathlib import Path

import keras

from fmnist.errors import UserError
from fmnist.run.files import TEMPORARY_MARK, remove, staged, temporary_files
from fmnist.run.records import make_record, write_history, write_record
from fmnist.run.resume import RESUMABLE


def save_atomically(model, path, weights_only=False):
    """model.save (or save_weights) to `path` through fmnist.run.files.staged, replacing the file."""
    with staged(path) as tmp:
        if weights_only:
            model.save_weights(tmp)
        else:
            model.save(tmp)


def remove_temporary_files(path):
    """Delete the temporary files that a killed save of `path` left beside it (only that file's own)."""
    for leftover in temporary_files(path):
        leftover.unlink(missing_ok=True)


def remove_temporary_backups(folder):
    """Delete the temporary files that killed saves left in a run's own backup folder."""
    if Path(folder).is_dir():
        for leftover in Path(folder).glob(f".epoch-*.weights.h5.*{TEMPORARY_MARK}.weights.h5"):
            leftover.unlink(missing_ok=True)


class KeptModelCheckpoint(keras.callbacks.Callback):
    """ModelCheckpoint(monitor="val_loss", save_best_only=keep == "best"), with an atomic save.

    keep="best" saves the epoch with the lowest validation loss; `best` starts at an interrupted run's best
    validation loss, so a resumed run never replaces a better model with a worse one. keep="last" saves every
    epoch, so the file ends up holding the final weights.
    """

    def __init__(self, path, keep="best", best=math.inf):
        super().__init__()
        self.path = path
        self.keep = keep
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is None or not math.isfinite(loss):  # a diverged epoch is never saved
            return
        if self.keep == "last" or loss < self.best:
            self.best = min(self.best, float(loss))
            save_atomically(self.model, self.path)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping on val_loss, that on --resume carries on where the run stopped.

    With `restore_best_weights` (keep="best") the model ends with its best epoch's weights, otherwise with its
    last. From the interrupted run's validation losses it takes the best loss and the epochs waited since, and
    from the best-model checkpoint the weights to restore at the end; otherwise patience would start over and
    the weights restored could be worse than the best already seen.
    """

    def __init__(self, patience, earlier_val_losses, best_model_path, restore_best_weights=True):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=restore_best_weights,
                         verbose=1)
        self.earlier_val_losses = list(earlier_val_losses)
        self.best_model_path = Path(best_model_path)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        losses = self.earlier_val_losses
        if not any(math.isfinite(loss) for loss in losses) or not self.best_model_path.is_file():
            return
        self.best_epoch = min(range(len(losses)), key=lambda i: losses[i] if math.isfinite(losses[i]) else math.inf)
        self.best = losses[self.best_epoch]
        self.wait = len(losses) - 1 - self.best_epoch
        if self.restore_best_weights:
            self.best_weights = keras.saving.load_model(self.best_model_path).get_weights()


def restore_last_epoch(model, paths, earlier):
    """Give a freshly compiled model the weights and optimizer state the run had after its last completed epoch."""
    for path in (paths.model, paths.history, paths.record):
        remove_temporary_files(path)
    remove_temporary_backups(paths.backup)
    if not earlier.epochs:
        return  # it died in its first epoch: there is nothing to restore, it starts over
    backup = paths.backup_file(earlier.epochs)
    if not backup.is_file():
        raise UserError(f"cannot resume {paths.name}: {backup} is missing")
    model.optimizer.build(model.trainable_variables)  # so that load_weights has optimizer variables to fill
    model.load_weights(backup)
    print(f"Resuming {paths.name} after epoch {earlier.epochs}")


class RunRecorder(keras.callbacks.Callback):
    """Keeps the run's files current after every epoch (see the module docstring), and holds the whole history:
    the earlier epochs of a resumed run followed by this session's.

    `run_facts` is the part of the run record that does not change during the run (fmnist.run.records.make_record).
    """

    def __init__(self, paths, earlier, run_facts):
        super().__init__()
        self.paths = paths
        self.history = {key: list(values) for key, values in earlier.history.items()}
        self.earlier_seconds = earlier.train_seconds
        self.run_facts = run_facts
        self.started = self.ended = None

    def save(self, status, test=None, figures=None):
        """Write the history pickle and the run record; return the record."""
        if self.history:
            write_history(self.paths.history, self.history)
        record = make_record(self.run_facts, status=status, history=self.history, train_seconds=self.seconds, test=test,
                             figures=figures)
        write_record(self.paths.record, record)
        return record

    @property
    def seconds(self):
        """Training time of all sessions (not evaluation, not the start-up)."""
        return self.earlier_seconds + (self.ended or time.perf_counter()) - self.started

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.save("running")  # a record from the start: even epoch 1 is resumable

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.paths.backup.mkdir(exist_ok=True)
        backup = self.paths.backup_file(len(self.history["loss"]))
        save_atomically(self.model, backup, weights_only=True)
        self.save("running")
        for older in self.paths.backup.glob("epoch-*.weights.h5"):
            if older != backup:
                older.unlink()

    def on_train_end(self, logs=None):
        self.ended = time.perf_counter()

    def raise_if_diverged(self, learning_rate):
        """After training: a NaN loss (TerminateOnNaN stopped the run) ends the run as diverged, with a UserError."""
        losses = self.history.get("loss", [])
        if any(math.isnan(loss) for loss in losses):
            self.finish("diverged")
            raise UserError(f"training diverged (the loss became NaN in epoch {len(losses)}); lower "
                            f"--learning-rate (now {learning_rate:g}). The history so far is in {self.paths.history}")

    def finish(self, status, test=None, figures=None):
        """Write the final history and record, and return the record. The backup goes only now, once the record
        no longer says "running"."""
        record = self.save(status, test, figures)
        if status not in RESUMABLE:
            remove(self.paths.backup)
        return record
