"""The entry scripts' error convention: one line on stderr and an exit code, never a traceback."""

import os
import sys


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


def run_guarded(main):
    """Run main() and turn failures into one line on stderr: exit 1 for errors, 130 for Ctrl-C.

    Set FMNIST_TRACEBACK=1 to see the full traceback of an unexpected error.
    """
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the convention is one line, never a traceback
        if os.environ.get("FMNIST_TRACEBACK"):
            raise
        print(f"error: {error_text(e)} (set FMNIST_TRACEBACK=1 for details)", file=sys.stderr)
        sys.exit(1)
