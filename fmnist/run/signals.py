"""Ctrl-C and SIGTERM during training: finish the current batch, then stop with every completed epoch saved.

This module imports Keras: import it only once the command line has been parsed.
"""

import signal
import sys

import keras

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal; exit_code is the shell's convention for it (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


class StopOnSignal(keras.callbacks.Callback):
    """While it is entered (`with StopOnSignal() as stop: model.fit(..., callbacks=[..., stop])`), SIGINT and
    SIGTERM only set a flag; the callback then raises TrainingInterrupted at the end of the current batch.

    Raising, rather than setting model.stop_training, keeps the unfinished epoch out of everything: Keras would
    otherwise validate it, log it as a full epoch and checkpoint it. Resuming repeats that epoch instead. A
    second signal acts at once, as if this class were not there (Ctrl-C twice to abort).
    """

    def __enter__(self):
        self.signum = None
        self._previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        self._restore_handlers()

    def _restore_handlers(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _on_signal(self, signum, frame):
        self.signum = signum
        self._restore_handlers()
        print(f"\n{signal.Signals(signum).name}: stopping at the end of this batch (send it again to stop at once)",
              file=sys.stderr, flush=True)

    def _stop_if_signalled(self):
        if self.signum is not None:
            raise TrainingInterrupted(self.signum)

    def on_train_batch_end(self, batch, logs=None):
        self._stop_if_signalled()

    def on_epoch_begin(self, epoch, logs=None):
        self._stop_if_signalled()  # the signal came during validation: that epoch is complete, stop before the next
