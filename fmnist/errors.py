"""The entry scripts' error convention: one line on stderr and an exit code, never a traceback."""

import contextlib
import os
import signal
import sys
import threading


class UserError(Exception):
    """A problem the user can fix (bad file, bad folder, bad input).

    The entry scripts print it as one line, `error: <message>`, and exit 1.
    """


def first_line(error, limit=200):
    """The first line of an exception's message (at most `limit` characters), or its type's name if it has none."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def error_text(error):
    """`KeyError: 'x'`: the exception's type and the first line of its message (the type alone without one)."""
    return f"{type(error).__name__}: {first_line(error)}" if str(error).strip() else type(error).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, as Ctrl-C raises KeyboardInterrupt: the same clean-up runs (half-written
    files removed, names given back), where the default action would end the process on the spot."""


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def signals_deferred(waiting_for=None):
    """Ctrl-C and SIGTERM wait for the end of the block, for steps that must complete together (a file and its
    card both renamed into place); then they act as usual. Python runs signal handlers in the main thread only,
    so another thread's block cannot be cut short, and needs nothing deferred.

    With `waiting_for` (what the block is doing: "the converter returns"), for a block that may take a while, the
    first signal says that it waits for it, and a second one acts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught, stops = [], (signal.SIGINT, signal.SIGTERM)

    def defer(signum, frame):
        caught.append(signum)
        if waiting_for:
            restore()
            print(f"\n{signal.Signals(signum).name}: stopping once {waiting_for} (send it again to stop at once)",
                  file=sys.stderr, flush=True)

    def restore():
        for s, handler in previous.items():
            signal.signal(s, handler)

    previous = {s: signal.signal(s, defer) for s in stops}
    try:
        yield
    finally:
        restore()
        if caught:
            signal.raise_signal(caught[0])


def run_guarded(main):
    """Run main() and turn failures into one line on stderr: exit 1 for errors, 130 for Ctrl-C, 143 for SIGTERM.

    Set FMNIST_TRACEBACK=1 to see the full traceback of an unexpected error.
    """
    signal.signal(signal.SIGTERM, _raise_terminated)  # training and serving set their own while they run
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Terminated:
        print("error: stopped by SIGTERM", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the convention is one line, never a traceback
        if os.environ.get("FMNIST_TRACEBACK"):
            raise
        print(f"error: {error_text(e)} (set FMNIST_TRACEBACK=1 for details)", file=sys.stderr)
        sys.exit(1)
