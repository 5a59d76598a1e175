"""The training loop of --strategy multiworker, which model.fit cannot run: under MultiWorkerMirroredStrategy
it fails in Keras 3 ("Attempt to convert a value (PerReplica ...)", keras-team/keras#20585).

The loop drives the run's Keras callbacks and logs the same metrics as fit: loss, accuracy and top-5, summed over
every replica of every worker. A Ctrl-C or SIGTERM on any worker is shared with the others in the next training
step, so all of them stop at the same batch, as interrupted.
"""

from fmnist.run.signals import STOP_SIGNALS, TrainingInterrupted

METRICS = ("loss", "accuracy", "top5_accuracy", "count")  # summed over every replica of every worker


def _make_steps(strategy, model):
    """The distributed train and validation steps. Each returns the METRICS summed over the global batch; the
    train step takes and returns also, for each of STOP_SIGNALS, whether this worker (in) or any worker (out)
    caught it."""
    import keras
    import tensorflow as tf

    sum_ = tf.distribute.ReduceOp.SUM

    def batch_sums(y, probabilities, loss_sum):
        y = tf.cast(y, tf.int32)
        probabilities = tf.cast(probabilities, tf.float32)
        correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=1, output_type=tf.int32), y), tf.float32)
        top5 = tf.cast(tf.math.in_top_k(y, probabilities, k=5), tf.float32)
        return tf.stack([loss_sum, tf.reduce_sum(correct), tf.reduce_sum(top5), tf.cast(tf.shape(y)[0], tf.float32)])

    def per_example_loss(y, probabilities):
        return tf.cast(keras.losses.sparse_categorical_crossentropy(y, probabilities), tf.float32)

    def train_replica(x, y, caught):
        context = tf.distribute.get_replica_context()
        # The true size of this global batch (the last one is smaller), and the signals caught by any worker.
        reduced = context.all_reduce(sum_, tf.concat([[tf.shape(y)[0]], caught], axis=0))
        global_count, caught = reduced[0], reduced[1:]
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            losses = per_example_loss(y, probabilities)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_count)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = model.optimizer.scale_loss(loss)  # mixed_float16: a LossScaleOptimizer; else unchanged
        gradients = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return batch_sums(y, probabilities, tf.reduce_sum(losses)), caught

    def val_replica(x, y):
        probabilities = model(x, training=False)
        return batch_sums(y, probabilities, tf.reduce_sum(per_example_loss(y, probabilities)))

    @tf.function
    def train_step(batch, caught):
        sums, caught = strategy.run(train_replica, args=(*batch, caught))
        return strategy.reduce(sum_, sums, axis=None), strategy.reduce(sum_, caught, axis=None)

    @tf.function
    def val_step(batch):
        return strategy.reduce(sum_, strategy.run(val_replica, args=batch), axis=None)

    return train_step, val_step


def _averages(sums, prefix=""):
    loss, correct, top5, count = (float(v) for v in sums)
    return {f"{prefix}loss": loss / count, f"{prefix}accuracy": correct / count,
            f"{prefix}top5_accuracy": top5 / count}


def fit_multiworker(strategy, model, train_ds, val_ds, *, epochs, callbacks, initial_epoch, stop):
    """model.fit for MultiWorkerMirroredStrategy. `stop`, the run's entered fmnist.run.signals.StopOnSignal, only
    records a signal here: the train step shares it with every worker, so that all stop at the same step."""
    import keras
    import numpy as np
    import tensorflow as tf

    train_step, val_step = _make_steps(strategy, model)
    train_data = strategy.experimental_distribute_dataset(train_ds)
    val_data = strategy.experimental_distribute_dataset(val_ds)
    callbacks = keras.callbacks.CallbackList(callbacks, add_progbar=True, model=model, verbose=1, epochs=epochs,
                                             steps=int(train_ds.cardinality()))
    model.stop_training = False
    logs = {}
    callbacks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        totals = np.zeros(len(METRICS))
        for step, batch in enumerate(train_data):
            callbacks.on_train_batch_begin(step)
            caught = [int(stop.signum == s) for s in STOP_SIGNALS]
            sums, caught = train_step(batch, tf.constant(caught, tf.int32))
            if caught.numpy().any():  # all workers stop at this same step
                raise TrainingInterrupted(STOP_SIGNALS[int(np.argmax(caught.numpy() > 0))])
            totals += sums.numpy()
            callbacks.on_train_batch_end(step, _averages(totals))
            if model.stop_training:  # TerminateOnNaN; every worker sees the same loss, so all stop here
                break
        val_totals = sum((val_step(batch).numpy() for batch in val_data), np.zeros(len(METRICS)))
        logs = {**_averages(totals), **_averages(val_totals, "val_")}
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:  # EarlyStopping or TerminateOnNaN, decided alike on every worker
            break
    callbacks.on_train_end(logs)
