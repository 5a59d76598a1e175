"""Every matplotlib figure the project draws. Functions return a Figure; the caller decides where it goes."""

# Keras 2.2 and older wrote `acc`; later versions write `accuracy`.
ACCURACY_KEYS = ("accuracy", "acc")


def _metric(history, names, prefix=""):
    for name in names:
        if prefix + name in history:
            return history[prefix + name]
    return None


def plot_histories(histories, title=None):
    """Accuracy and loss against epoch, training solid and validation dashed, one colour per run.

    `histories` maps a run name to its Keras history dict. Metrics a run lacks are left out of its panel.
    """
    import matplotlib.pyplot as plt

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    colours = plt.get_cmap("tab10").colors
    for i, (run, history) in enumerate(histories.items()):
        colour = colours[i % len(colours)]
        for ax, names in ((acc_ax, ACCURACY_KEYS), (loss_ax, ("loss",))):
            for prefix, style, split in (("", "-", "train"), ("val_", "--", "validation")):
                values = _metric(history, names, prefix)
                if values:
                    epochs = range(1, len(values) + 1)
                    ax.plot(epochs, values, style, color=colour, marker="o", markersize=3, label=f"{run} ({split})")

    for ax, what in ((acc_ax, "Accuracy"), (loss_ax, "Loss")):
        ax.set_title(what)
        ax.set_xlabel("epoch")
        ax.set_ylabel(what.lower())
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {what.lower()} recorded", transform=ax.transAxes, ha="center", color="grey")
    if title:
        fig.suptitle(title)
    return fig
