"""Speed and scale: what makes a run faster on the hardware at hand, none of it needed to understand the model.

- cpu.py: what this CPU computes quickly (its ISA flags, and whether bf16 beats float32 on it);
- fast_ops.py: faster stand-ins for Keras's Adam update, Dropout mask and BatchNorm (--no-fast-ops: Keras's own);
- cluster.py, devices.py, multiworker.py: tf.distribute on mirrored GPUs or several machines.

It imports the core's leaves and fmnist.run (signals). It must never import the training flow
(fmnist.training, fmnist.report, fmnist.cli) nor fmnist.ship.
"""
