"""Keras's progress bar, kept within the epoch's length.

This module imports Keras: import it only once the command line has been parsed.
"""

import keras


class EpochProgbarLogger(keras.callbacks.ProgbarLogger):
    """With steps_per_execution > 1, Keras reports the epoch's last, partial call into TensorFlow as a full one,
    so the bar ran past its end (`48/43` for 43 steps in calls of 8). This one stops at the epoch's length."""

    def on_train_batch_end(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)  # `batch` counts from 0
        super().on_train_batch_end(batch, logs)
