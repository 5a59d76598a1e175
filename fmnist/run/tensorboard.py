"""What the project writes to TensorBoard besides Keras's scalars: figures as images, hyperparameters, and a
callback that draws the validation predictions and confusion matrix at every epoch end.

Each writer gets its own subfolder of the run's log folder, so TensorBoard lists them as runs of their own
(`<run>/images`, `<run>/test`) and the hparams summary in `<run>/` covers all of them.
"""

import numpy as np

from fmnist import CLASS_NAMES
from fmnist.config import SETTINGS_BY_NAME
from fmnist.data import image_batches
from fmnist.evaluation import confusion_matrix, model_input
from fmnist.figures import figure_png, plot_confusion_matrix, plot_predictions

TENSORBOARD_DPI = 72  # the images of every epoch are small: a few hundred milliseconds an epoch, small event files
EPOCH_GRID_PER_CLASS = 2  # the fixed validation images shown at each epoch
EPOCH_CONFUSION_IMAGES = 1000  # the validation images behind each epoch's confusion matrix


def png_image(png):
    """PNG bytes as the (1, height, width, 3) uint8 tensor that tf.summary.image takes."""
    import tensorflow as tf

    return tf.image.decode_png(png, channels=3)[None]


def log_pngs(logdir, pngs, step):
    """Write {tag: PNG bytes} as images at `step` into the event files of `logdir`: the same pictures as the PNG
    files beside them, so each figure is drawn once."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for tag, png in pngs.items():
            tf.summary.image(tag, png_image(png), step=step)
    writer.close()


def log_hparams(logdir, run, hyperparameters, metrics, step):
    """The run's hyperparameters for the HPARAMS tab, and its final metrics as scalars beside them."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    # The plugin takes bool, int, float and str values only: an unset value shows as its setting says (--limit "all").
    values = {key: SETTINGS_BY_NAME[key].unset if value is None else value for key, value in hyperparameters.items()}
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        hp.hparams(values, trial_id=run)
        for name, value in metrics.items():
            tf.summary.scalar(name, value, step=step)
    writer.close()


def pick_per_class(labels, per_class):
    """Indices of the first `per_class` images of each class, ordered class by class."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASS_NAMES))])


def make_epoch_images_callback(logdir, images, labels):
    """A Keras callback that logs, at every epoch end, the predictions on fixed validation images (green right,
    red wrong) and the confusion matrix on the first EPOCH_CONFUSION_IMAGES validation images."""
    import keras
    import tensorflow as tf

    grid = pick_per_class(labels, EPOCH_GRID_PER_CLASS)
    grid_images, grid_labels = images[grid], labels[grid]
    images, labels = images[:EPOCH_CONFUSION_IMAGES], labels[:EPOCH_CONFUSION_IMAGES]

    class EpochImages(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.writer = tf.summary.create_file_writer(str(logdir))

        def on_epoch_end(self, epoch, logs=None):
            # Unchecked: a diverged epoch's NaN outputs are drawn, and the run then stops with its own message.
            x = model_input(self.model, np.concatenate([images, grid_images]))
            probabilities = np.asarray(self.model.predict(image_batches(x), verbose=0), "float32")
            predicted, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
            figures = {
                "validation/predictions": plot_predictions(
                    grid_images, grid_labels, predicted[len(images):], confidence[len(images):], CLASS_NAMES,
                    title=f"Epoch {epoch + 1}: fixed validation images", columns=5),
                "validation/confusion_matrix": plot_confusion_matrix(
                    confusion_matrix(labels, predicted[:len(images)]), CLASS_NAMES,
                    title=f"Epoch {epoch + 1}: the first {len(images):,} validation images", counts=False),
            }
            with self.writer.as_default():
                for tag, fig in figures.items():
                    # At Keras's step for the epoch's scalars (the epoch counted from 0), so they line up.
                    tf.summary.image(tag, png_image(figure_png(fig, dpi=TENSORBOARD_DPI)), step=epoch)
            self.writer.flush()

        def on_train_end(self, logs=None):
            self.writer.close()

    return EpochImages()
