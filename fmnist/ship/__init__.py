"""Shipping a trained model: files other runtimes run, and predictions on a user's own pictures.

- export.py: `export` writes SavedModel, ONNX and LiteRT (float and int8) files, each checked in its own runtime;
- runtimes.py: one way to load and run a .keras, SavedModel, .onnx or .tflite file;
- predict.py: `predict` on image files, with heat maps on request.

It imports the core's leaves and fmnist.run (the safe writer, free names). It must never import the training
flow (fmnist.training, fmnist.report, fmnist.cli) nor fmnist.speed.
"""
