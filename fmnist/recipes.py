"""Training recipes: the settings a model trains best with, where they differ from the top-of-file defaults.

The order of precedence is: a flag on the command line, then the model's recipe here, then the hyperparameter
block at the top of fashion_mnist.py. So `--model fast` trains with the speed-run recipe, and
`--model fast --epochs 3` changes only the epochs.
"""

RECIPES = {
    # About 15 s an epoch on 2 cores: the whole command takes under two minutes (benchmarks/time_to_accuracy.py).
    "fast": dict(epochs=6, batch_size=256, learning_rate=2e-3, schedule="cosine", warmup_epochs=0.5,
                 weight_decay=5e-4, augment="flip", tta=True, patience=6),
}


def recipe_note(key, default):
    """`(default: 20; fast: 6)`, for --help."""
    notes = [f"default: {default}"] + [f"{model}: {r[key]}" for model, r in RECIPES.items() if key in r]
    return f"({'; '.join(notes)})"
