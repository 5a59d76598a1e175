"""Plot accuracy and loss curves from one or more training histories.

    python graph_history.py history/RUN.pkl                      # writes history/RUN.png
    python graph_history.py history/a.pkl history/b.pkl --out compare.png
    python graph_history.py history/RUN.json --show              # the JSON run record works too
    python graph_history.py history/SWEEP-*.pkl --validation-only  # a sweep's comparison figure

A history is the Keras History.history dict (any Keras version) pickled by fashion_mnist.py, or the run
record JSON that holds the same dict. Pickles are read with a loader that admits only plain data.
"""

import argparse
import sys
from pathlib import Path

from fmnist.errors import run_guarded


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", metavar="HISTORY", help="history .pkl or run record .json files")
    parser.add_argument("--out", metavar="FILE.png", help="where to write the figure (default: next to the first file)")
    parser.add_argument("--title", help="figure title")
    parser.add_argument("--validation-only", action="store_true",
                        help="only the validation curves, one line per run (the figure a --sweep writes)")
    parser.add_argument("--show", action="store_true", help="also open the figure in a window")
    args = parser.parse_args(argv)

    import matplotlib

    if not args.show:
        matplotlib.use("Agg")  # headless: no display needed
    from fmnist.errors import UserError
    from fmnist.figures import HISTORY_FIGURE_SIZE, figure_png, plot_histories
    from fmnist.run.files import write_file
    from fmnist.run.records import read_history

    paths = [Path(f) for f in args.files]
    histories = {}
    for path in paths:
        name = path.stem if path.stem not in histories else str(path)  # same run name in two folders
        histories[name] = read_history(path)

    if args.out:
        out = Path(args.out)
    elif len(paths) == 1:
        out = paths[0].with_suffix(".png")
    else:
        out = paths[0].with_name(f"{paths[0].stem}-compare.png")
    if out.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        out = out.with_suffix(".png")
    window = None
    if args.show:
        import matplotlib.pyplot as plt

        window = plt.figure(figsize=HISTORY_FIGURE_SIZE, layout="constrained")
    fig = plot_histories(histories, title=args.title, validation_only=args.validation_only, fig=window)
    try:  # the whole figure or nothing: a failed write leaves no torn file, and an earlier figure as it was
        write_file(out, figure_png(fig, format=out.suffix.lower().lstrip(".")))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"Wrote {out}")
    if args.show:
        plt.show()
    return 0


if __name__ == "__main__":
    run_guarded(lambda: main(sys.argv[1:]))
