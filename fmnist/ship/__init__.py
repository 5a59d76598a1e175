"""Shipping a trained model: files other runtimes run, a server, and predictions on a user's own pictures.

- export.py: `export` writes SavedModel, ONNX and LiteRT (float and int8) files, each checked in its own runtime;
- card.py: the Markdown model card beside each exported file, and the provenance every run record carries;
- runtimes.py: one way to load and run a .keras, SavedModel, .onnx or .tflite file (first in a child process);
- predict.py: `predict` on image files and folders, with heat maps on request;
- ood.py: the "doesn't look like a garment" flag; serve.py (and page.html): `serve`, TF Serving's REST API.

It imports the core's leaves, fmnist.run (the safe writer, free names) and fmnist.speed.cpu (the CPU's facts, for
the provenance). It must never import the training flow (fmnist.training, fmnist.report, fmnist.cli).
"""
