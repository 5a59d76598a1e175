"""Training recipes: the settings a model trains best with, where they differ from the top-of-file defaults.

The order of precedence is: a flag on the command line, then the model's recipe here, then the hyperparameter
block at the top of fashion_mnist.py. So `--model fast` trains with the speed-run recipe, and
`--model fast --epochs 3` changes only the epochs.
"""

RECIPES = {
    # A short run at a high peak rate, which batch norm keeps stable after a brief warm-up, learns the most per
    # second. A cosine schedule does its best work in its last epochs, so no early stop, and the run keeps its last
    # epoch. Nothing is chosen on the validation set, so 2 % of the images are enough to watch it
    # (docs/experiments.md).
    "fast": dict(epochs=5, batch_size=256, learning_rate=6e-3, schedule="cosine", warmup_epochs=0.3,
                 weight_decay=5e-4, augment="flip", tta="flip", patience=5, keep="last", val_fraction=0.02),
    # A long run, so more augmentation against overfitting, and test-time copies with the shifts it trained on.
    # Keras scales AdamW's decay by the learning rate, so 0.05 is what shrinks the weights noticeably. As in
    # `fast`, nothing is chosen on the validation set, so it keeps only 2 % of the images.
    "best": dict(epochs=78, batch_size=256, learning_rate=3e-3, schedule="cosine", warmup_epochs=2,
                 weight_decay=0.05, augment="flip-shift-erase", tta="flip-shift", patience=78, keep="last",
                 val_fraction=0.02),
}


def recipe_note(key, default):
    """`(default: 20; fast: 5; best: 78)`, for --help."""
    notes = [f"default: {default}"] + [f"{model}: {r[key]}" for model, r in RECIPES.items() if key in r]
    return f"({'; '.join(notes)})"
