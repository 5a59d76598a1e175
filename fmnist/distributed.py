"""Training on several devices or machines with tf.distribute: --strategy one | mirrored | multiworker | auto.

The training flow sees one Devices object (start_devices), whatever the strategy.
`one` and `mirrored` train with plain model.fit inside the strategy's scope. `multiworker`
(MultiWorkerMirroredStrategy, the cluster read from TF_CONFIG) trains with the custom loop below, because
model.fit under that strategy fails in Keras 3 ("Attempt to convert a value (PerReplica ...)",
keras-team/keras#20585). The loop still drives the run's Keras callbacks and logs the same metrics as fit.

Every worker runs the same program on the same data: the pipeline is batched with the global batch and
sharded by element (AutoShardPolicy.DATA), so each worker trains on its own slice of every global batch and all
of them end with the same weights. Only the chief (task "chief", else worker 0) writes into --out; the others
write what the callbacks need into a temporary folder that is removed when the process exits.

Nothing waits forever: joining the cluster and every collective operation time out after --worker-timeout
seconds, and TensorFlow's coordination service notices a crashed peer. A worker that loses a peer during training,
or waits in vain for the cluster to form, ends with a one-line error.
A Ctrl-C or SIGTERM on any worker is shared with the others in the next training step, so all of them stop at
the same batch, as interrupted.

For tests: when FMNIST_WEIGHTS_SHA256_FILE is set, each process writes the SHA-256 of its final weights there.

TensorFlow is imported only inside the functions that need it.
"""

import atexit
import contextlib
import faulthandler
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from fmnist import UserError
from fmnist.errors import described, first_line

WEIGHTS_DIGEST_ENV = "FMNIST_WEIGHTS_SHA256_FILE"


@dataclass(frozen=True)
class Role:
    """This process's place in the run, known from --strategy and TF_CONFIG before TensorFlow loads."""

    strategy: str  # one | mirrored | multiworker (auto resolved later, when the GPUs can be counted)
    is_chief: bool
    task: str  # for messages: "worker 1 of 2", or "" when alone

    def out_folder(self, out):
        """Where this process writes its run files: --out for the chief, a temporary folder for other workers."""
        if self.is_chief:
            return out
        if not _temporary_folders:
            atexit.register(_remove_temporary_folders)  # on any exit, errors and signals included, but a kill
        _temporary_folders.append(tempfile.mkdtemp(prefix="fmnist-worker-"))
        return _temporary_folders[-1]


_temporary_folders = []


def _remove_temporary_folders():  # not after a kill, or the watchdog's exit in _join_cluster
    for folder in _temporary_folders:
        shutil.rmtree(folder, ignore_errors=True)


def read_role(strategy):
    """The Role for --strategy; for multiworker, TF_CONFIG must describe the cluster and this task in it."""
    if strategy != "multiworker":
        return Role(strategy, True, "")
    cluster, task_type, index = _read_tf_config(os.environ.get("TF_CONFIG"))
    # TensorFlow's rule: the task of type "chief" if there is one, else worker 0.
    is_chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
    size = sum(len(addresses) for addresses in cluster.values())
    return Role(strategy, is_chief, f"{task_type} {index} of a {size}-task cluster")


def _read_tf_config(text):
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    if not text:
        raise UserError(f"--strategy multiworker needs the cluster in TF_CONFIG, e.g. TF_CONFIG='{example}'")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, index = task["type"], task["index"]
        addresses = cluster[task_type]
        if not (isinstance(cluster, dict) and all(isinstance(a, list) and a for a in cluster.values())
                and isinstance(index, int) and 0 <= index < len(addresses)):
            raise ValueError("the task is not in the cluster, or a job lists no address")
    except (ValueError, KeyError, TypeError) as e:
        reason = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise UserError(f"TF_CONFIG is malformed ({reason}); expected for example {example}") from None
    return cluster, task_type, index


class Devices:
    """Where and how a run trains: one device, or mirrored over this machine's GPUs (plain model.fit within the
    strategy's scope). Multiworker is the subclass below; the training flow calls only these methods."""

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

    def on_local_model(self, callback, build):
        """`callback`, made to predict on a model this process alone can run (the model itself, here)."""
        return callback

    def fit(self, model, train_ds, val_ds, *, epochs, callbacks, initial_epoch=0):
        from fmnist.training import train

        train(model, train_ds, val_ds, epochs, callbacks, initial_epoch=initial_epoch)
        write_weights_digest(model)

    def model_to_report(self, model, build):
        """The trained model to test and report on, or None where another process reports."""
        return model

    def resume_hint(self, command):
        return f"To continue:\n    {command}"


class MultiWorkerDevices(Devices):
    """MultiWorkerMirroredStrategy: a custom training loop (model.fit fails under it in Keras 3), predictions on a
    local copy of the model, and the chief alone reports."""

    def on_local_model(self, callback, build):
        import keras

        class OnLocalCopy(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                callback.set_model(_local_copy(self.model, build))
                callback.on_train_begin(logs)

            def on_epoch_end(self, epoch, logs=None):
                callback.model.set_weights(self.model.get_weights())
                callback.on_epoch_end(epoch, logs)

            def on_train_end(self, logs=None):
                callback.on_train_end(logs)

        return OnLocalCopy()

    def fit(self, model, train_ds, val_ds, *, epochs, callbacks, initial_epoch=0):
        import tensorflow as tf

        try:
            _custom_loop(self.strategy, model, shard_by_data(train_ds), shard_by_data(val_ds), epochs=epochs,
                         callbacks=callbacks, initial_epoch=initial_epoch)
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.InternalError) as e:
            raise UserError(f"{self.role.task}: lost another worker, so every worker stops ({described(e)})") from None
        write_weights_digest(model)

    def model_to_report(self, model, build):
        return _local_copy(model, build) if self.role.is_chief else None

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
    strategy = _join_cluster(lambda: tf.distribute.MultiWorkerMirroredStrategy(communication_options=options),
                             role, timeout)
    return MultiWorkerDevices(role, strategy, name)


def _join_cluster(create, role, timeout):
    """create() waits inside TensorFlow, holding the interpreter, until every worker is up: no Python timer or
    signal handler can run meanwhile. So a C-level watchdog ends the process after `timeout` seconds, and Ctrl-C
    gets its default action (ends it at once)."""
    print(f"Joining the cluster in TF_CONFIG as {role.task}: waiting up to {timeout:g} s (--worker-timeout) for "
          "every worker; this process exits with status 1 if one never comes", flush=True)
    last_words = (f"error: not every worker in TF_CONFIG joined within {timeout:g} s: start them all, check their "
                  "addresses, or allow longer with --worker-timeout")
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        with _watchdog(timeout, last_words):
            return create()
    except Exception as e:  # noqa: BLE001 - any failure to connect means the same to the user
        raise UserError(f"could not join the cluster in TF_CONFIG: {first_line(e)}") from None
    finally:
        signal.signal(signal.SIGINT, previous)


# Run by the watchdog's child process: print the last words once the dump of the stacks begins, and nothing if
# the pipe closes without one.
_ANNOUNCER = "import sys; sys.stdin.buffer.read(1) and print(sys.argv[1], file=sys.stderr, flush=True)"


@contextlib.contextmanager
def _watchdog(timeout, last_words):
    """End the process with status 1 and `last_words` on stderr if the block is still running after `timeout` s.

    faulthandler's watchdog runs in C, so it fires even while TensorFlow holds the interpreter, but all it can
    write before it exits is a dump of every thread's stack. It writes that dump into a pipe to a small child
    process, which prints `last_words` instead.
    """
    read_end, write_end = os.pipe()
    announcer = subprocess.Popen([sys.executable, "-c", _ANNOUNCER, last_words], stdin=read_end)
    os.close(read_end)
    try:
        with os.fdopen(write_end, "w") as dump:
            faulthandler.dump_traceback_later(timeout, exit=True, file=dump)
            try:
                yield
            finally:
                faulthandler.cancel_dump_traceback_later()
    finally:
        announcer.wait()  # it ends as soon as the pipe closes


def shard_by_data(dataset):
    """Each worker builds the whole (seeded, so identical) pipeline and keeps its share of every batch.
    Sharding by file, the other policy, cannot apply to in-memory arrays."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _local_copy(model, build):
    """A copy of `model` outside the strategy, for predictions on the chief alone: under MultiWorkerMirrored,
    model.predict is a collective operation that would wait for the other workers."""
    copy = build()
    copy.set_weights(model.get_weights())
    return copy


def weights_digest(model):
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def write_weights_digest(model):
    """For tests (see the module docstring): prove that every worker ended with the same weights."""
    path = os.environ.get(WEIGHTS_DIGEST_ENV)
    if path:
        with open(path, "w") as f:
            f.write(weights_digest(model) + "\n")


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


def _custom_loop(strategy, model, train_ds, val_ds, *, epochs, callbacks, initial_epoch):
    import keras
    import numpy as np
    import tensorflow as tf

    from fmnist.interrupt import STOP_SIGNALS, StopOnSignal, TrainingInterrupted

    train_step, val_step = _make_steps(strategy, model)
    train_data = strategy.experimental_distribute_dataset(train_ds)
    val_data = strategy.experimental_distribute_dataset(val_ds)
    callbacks = keras.callbacks.CallbackList(callbacks, add_progbar=True, model=model, verbose=1, epochs=epochs,
                                             steps=int(train_ds.cardinality()))
    model.stop_training = False
    logs = {}
    # StopOnSignal only records the signal here; the train step shares it with every worker.
    with StopOnSignal() as stop:
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
