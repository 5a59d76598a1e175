"""Where a run trains, with tf.distribute: --strategy one | mirrored | multiworker | auto.

The training script sees one Devices object (start_devices), whatever the strategy. On one device and on
mirrored GPUs it trains with plain model.fit inside the strategy's scope. Under multiworker
(MultiWorkerMirroredStrategy, the cluster read from TF_CONFIG) `own_loop` is set: the script calls
`devices.fit` in model.fit's place, which runs fmnist.speed.multiworker's loop.

Every worker runs the same program on the same data: the pipeline is batched with the global batch and
sharded by element (AutoShardPolicy.DATA), so each worker trains on its own slice of every global batch and all
of them end with the same weights. Every collective operation times out after --worker-timeout seconds, and
TensorFlow's coordination service notices a crashed peer: a worker that loses one ends with a one-line error.

This module never imports the training flow; TensorFlow is imported only inside the functions that need it.
"""

from fmnist.errors import UserError, error_text
from fmnist.speed.cluster import join_cluster


class Devices:
    """Where and how a run trains: one device, or mirrored over this machine's GPUs (plain model.fit within the
    strategy's scope). Multiworker is the subclass below."""

    own_loop = False  # True where model.fit cannot train: the script then calls self.fit instead

    def __init__(self, role, strategy, name):
        self.role = role
        self.strategy = strategy  # the tf.distribute.Strategy
        self.name = name  # one | mirrored | multiworker
        self.replicas = strategy.num_replicas_in_sync

    def global_batch(self, per_replica):
        return per_replica * self.replicas

    def learning_rate(self, config):
        """--learning-rate, multiplied by the number of replicas with --scale-lr."""
        return config.learning_rate * (self.replicas if config.scale_lr else 1)

    def describe(self, config):
        where = f", {self.role.task}" if self.role.task else ""
        return (f"Strategy: {self.name}{where}; {self.replicas} replica(s) x batch {config.batch_size} = global "
                f"batch {self.global_batch(config.batch_size)}; learning rate {self.learning_rate(config):g}")

    def record(self, per_replica):
        """What the run record says about the devices."""
        return {"strategy": self.name, "replicas": self.replicas, "global_batch_size": self.global_batch(per_replica)}

    def scope(self):
        """Build the model and its optimizer within this, so that their variables live on the right devices."""
        return self.strategy.scope()

    def predicting_callback(self, callback):
        """`callback`, made to predict on a model this process alone can run (the model itself, here)."""
        return callback

    def model_for_report(self, model):
        """The trained model to test and report on, or None where another process reports."""
        return model

    def resume_hint(self, command):
        return f"To continue:\n    {command}"


class MultiWorkerDevices(Devices):
    """MultiWorkerMirroredStrategy: its own training loop, predictions on a local copy of the model, and the chief
    alone reports."""

    own_loop = True

    def predicting_callback(self, callback):
        import keras

        class OnLocalCopy(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                callback.set_model(local_copy(self.model))
                callback.on_train_begin(logs)

            def on_epoch_end(self, epoch, logs=None):
                callback.model.set_weights(self.model.get_weights())
                callback.on_epoch_end(epoch, logs)

            def on_train_end(self, logs=None):
                callback.on_train_end(logs)

        return OnLocalCopy()

    def fit(self, model, train_ds, val_ds, *, epochs, callbacks, initial_epoch, stop):
        """model.fit's counterpart (see fmnist.speed.multiworker.fit_multiworker)."""
        import tensorflow as tf

        from fmnist.speed.multiworker import fit_multiworker

        try:
            fit_multiworker(self.strategy, model, shard_by_data(train_ds), shard_by_data(val_ds), epochs=epochs,
                            callbacks=callbacks, initial_epoch=initial_epoch, stop=stop)
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.InternalError) as e:
            raise UserError(f"{self.role.task}: lost another worker, so every worker stops ({error_text(e)})") from None

    def model_for_report(self, model):
        return local_copy(model) if self.role.is_chief else None

    def resume_hint(self, command):
        return "--resume does not support --strategy multiworker."


def start_devices(role, timeout):
    """Create the strategy. For multiworker this joins the cluster: it waits up to `timeout` seconds for every
    worker, and sets the same timeout on every collective operation."""
    import tensorflow as tf

    name = role.strategy
    if name == "auto":
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "one"
    if name == "one":
        return Devices(role, tf.distribute.get_strategy(), name)  # whatever single device TensorFlow picks
    if name == "mirrored":
        return Devices(role, tf.distribute.MirroredStrategy(), name)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    strategy = join_cluster(lambda: tf.distribute.MultiWorkerMirroredStrategy(communication_options=options),
                            role, timeout)
    return MultiWorkerDevices(role, strategy, name)


def shard_by_data(dataset):
    """Each worker builds the whole (seeded, so identical) pipeline and keeps its share of every batch.
    Sharding by file, the other policy, cannot apply to in-memory arrays."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def local_copy(model):
    """A copy of `model` outside the strategy, for predictions on the chief alone: under MultiWorkerMirrored,
    model.predict is a collective operation that would wait for the other workers."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
