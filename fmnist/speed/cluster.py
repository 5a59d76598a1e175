"""Joining a cluster of machines for --strategy multiworker: this process's role in TF_CONFIG, the folder it
writes to, and a watchdog, because nothing may wait forever.

Only the chief (task "chief", else worker 0) writes into --out; the others write what the callbacks need into a
temporary folder that is removed when the process exits. Joining the cluster times out after --worker-timeout
seconds, and a worker that waits in vain for the others ends with a one-line error.

No TensorFlow at import: the role is read, and a bad TF_CONFIG refused, before TensorFlow loads.
"""

import atexit
import contextlib
import faulthandler
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from fmnist.errors import UserError, first_line


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


def _remove_temporary_folders():  # not after a kill, or the watchdog's exit in join_cluster
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


def join_cluster(create, role, timeout):
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
