"""Measuring a trained model on held-out data."""


def evaluate(model, dataset):
    """Loss, accuracy and top-5 accuracy of a compiled model on a dataset, as plain floats."""
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    return {"loss": float(results["loss"]), "accuracy": float(results["accuracy"]),
            "top5_accuracy": float(results["top5_accuracy"])}
