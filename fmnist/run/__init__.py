"""A run's files and their safety: everything a run writes, and every file it reads back, goes through here.

- names.py: run names and a run's paths, the one loop that claims a free name, and the lock on a run;
- files.py: the one safe writer (replace, create-new, stage a folder) and the writable-folder check;
- records.py: the history pickle and the JSON run record; safe_pickle.py: the unpickler that admits only data;
- checkpoints.py: the callbacks that keep the model, the history and the --resume backup current;
- resume.py: reading an interrupted run back; signals.py: Ctrl-C and SIGTERM during training;
- sweep.py: one run per --sweep value, then a comparison; tensorboard.py: what goes to TensorBoard.

It imports only the core's leaves (errors, config, data, evaluation, figures). It must never import the
training flow (fmnist.training, fmnist.report, fmnist.cli), fmnist.ship or fmnist.speed.
"""
