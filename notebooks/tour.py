# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of Fashion-MNIST: how a small CNN learns to tell clothes apart
#
# This notebook trains the project's baseline network on real Fashion-MNIST images and opens it up as it goes:
# what the data looks like, what each layer does to one picture, how training goes, where the model goes wrong
# and why, a few experiments you can change in one line, and how to ship the model as a file that runs without
# TensorFlow.
#
# It runs top to bottom in about 5 minutes on 2 CPU cores, because it trains on 10,000 of the 54,000 training
# images for 5 epochs (an **epoch** is one pass over the training images). Set `FULL = True` below for the whole
# training set and 12 epochs: expect about half an hour on 2 cores, and a few points more accuracy (this
# recipe scores 92.47 % on the full set: the README's "baseline recipe").
#
# Run it from the project's folder (`jupyter lab notebooks/tour.ipynb`, or VS Code), after
# `pip install -r requirements-dev.txt`.

# %%
# ruff: noqa: E402 - a notebook imports where it first needs a thing
FULL = False  # True: all 54,000 training images and 12 epochs, as a real run (about half an hour on 2 cores)

import os

# The CI test sets TOUR_QUICK=1 to check that every cell runs, on even fewer images; the outputs you see here
# come from a normal run (FULL = False, TOUR_QUICK unset).
QUICK = os.environ.get("TOUR_QUICK") == "1"
TRAIN_IMAGES = None if FULL else 1_000 if QUICK else 10_000  # None: all of them
EPOCHS = 12 if FULL else 1 if QUICK else 5
SEED = 1337

# %% [markdown]
# ## 0. Set-up
#
# The project's package, `fmnist`, holds the data loader, the model builders and every figure; this notebook
# calls them, and keeps the Keras calls (`compile`, `fit`, `evaluate`, `predict`) in plain view.

# %%
import sys
import time
from pathlib import Path

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
sys.path.insert(0, str(ROOT))  # so that `import fmnist` finds the project's package
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ code: warnings and errors only

from fmnist.quiet import hide_cuda_noise

hide_cuda_noise()  # TensorFlow's "no CUDA driver" lines say nothing on a machine without a GPU

# %matplotlib inline
import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from fmnist import CLASS_NAMES
from fmnist import figures as fig_lib
from fmnist.data import load_fashion_mnist, split_train_val

keras.utils.set_random_seed(SEED)  # the same weights and shuffling every time the notebook runs
keras.mixed_precision.set_global_policy("float32")  # plain 32-bit floats, so hand-made sums match Keras's
started = time.monotonic()
print(f"Keras {keras.__version__}; {TRAIN_IMAGES or 'all'} training images, {EPOCHS} epochs")

# %% [markdown]
# ## 1. The data
#
# Fashion-MNIST (Zalando Research, 2017) holds 70,000 greyscale pictures of clothes, 28×28 pixels each, in 10
# classes: 60,000 to train on and 10,000 to test on. The four files ship with this project in `data/fashion/`,
# and the loader checks each one's format, size and checksum.

# %%
data = load_fashion_mnist()  # the shipped copy in data/fashion/
print(data.source.replace(str(ROOT) + "/", ""))
print("train:", data.x_train.shape, data.x_train.dtype, "| test:", data.x_test.shape)

# %% [markdown]
# Twelve examples of each class. The pictures are stored light on dark (0 is black, 255 white), and every
# figure in this project draws them that way.

# %%
samples = [data.x_train[data.y_train == c][:12] for c in range(len(CLASS_NAMES))]
display(fig_lib.plot_class_samples(samples, CLASS_NAMES))

# %% [markdown]
# **The classes are balanced**: exactly 6,000 training and 1,000 test images each. So accuracy is a fair
# summary here, and a model that always said "Bag" would score 10 %.

# %%
fig, ax = plt.subplots(figsize=(9, 3), layout="constrained")
counts = np.bincount(data.y_train, minlength=10), np.bincount(data.y_test, minlength=10)
ax.bar(np.arange(10) - 0.2, counts[0], 0.4, label="train")
ax.bar(np.arange(10) + 0.2, counts[1], 0.4, label="test")
ax.set_xticks(range(10), CLASS_NAMES, rotation=30, ha="right")
ax.set_ylabel("images")
ax.set_title("Images per class")
ax.legend()
plt.show()

# %% [markdown]
# **A picture is just numbers.** Here is one training image, and its pixel values: a 28×28 grid of integers from
# 0 (black) to 255 (white). The network sees nothing else.

# %%
image, label = data.x_train[0], data.y_train[0]
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.6), layout="constrained", width_ratios=[1, 2])
left.imshow(image, cmap="gray", vmin=0, vmax=255)
left.set_title(f"training image 0: {CLASS_NAMES[label]}")
left.axis("off")
right.imshow(image, cmap="gray", vmin=0, vmax=255)
for (row, col), value in np.ndenumerate(image):
    right.text(col, row, value, ha="center", va="center", fontsize=4.5, color="black" if value > 128 else "white")
right.set_title("the same image as the numbers the network reads")
right.axis("off")
plt.show()

# %% [markdown]
# **Why it replaced MNIST.** MNIST, the handwritten digits, became too easy: a classic CNN scores 99.7 % on it,
# and even simple methods pass 97 %, so a better idea barely shows. It is also overused, and digits are unlike
# most images people care about. Fashion-MNIST keeps MNIST's format (same size, same file layout, same 10
# classes of 60,000 + 10,000), so any MNIST code runs on it unchanged, but it is much harder: a good small CNN
# makes 7 mistakes in 100 instead of 1 in 300.
#
# **Its labels are not all right.** Each picture got one label from Zalando's catalogue, and some are wrong or
# could be either: a shirt without buttons is close to a T-shirt, a long top is close to a dress. Tops
# (T-shirt/top, Pullover, Coat, Shirt) blur into one another most. Below, several of the model's "most
# confident mistakes" look more like label errors than model errors. So no model reaches 100 %, and around
# 96 % the remaining mistakes are mostly such hard cases.

# %% [markdown]
# **Three sets.** We train on part of the 60,000 training images, hold out 6,000 of them (10 %) as a
# **validation** set to watch during training and to compare experiments, and touch the 10,000 **test** images
# only once, at the end: a score on data you have tuned against is too hopeful. The split is **stratified**:
# every part holds the ten classes in the same proportions.

# %%
(x_train, y_train), (x_val, y_val) = split_train_val(data.x_train, data.y_train, val_fraction=0.1, seed=SEED,
                                                     limit=TRAIN_IMAGES)
x_test, y_test = data.x_test, data.y_test
print(f"{len(x_train):,} train, {len(x_val):,} validation, {len(x_test):,} test")
print("images per class in this training set:", np.bincount(y_train))

# %% [markdown]
# ## 2. Build the baseline, compile it, train it
#
# The network is a list of layers, each turning its input into a new array:
#
# | layer | what it does |
# |---|---|
# | `Rescaling(1/255)` | pixels from 0–255 to 0–1 |
# | `Conv2D(32, 3, relu)` | 32 learned 3×3 **filters** slide over the image; each maps where its pattern is |
# | `Conv2D(64, 3, relu)` | 64 filters over those 32 maps: patterns of patterns |
# | `MaxPooling2D(2)` | keeps the largest value of each 2×2 block: half the width and height |
# | `Dropout(0.25)` | during training, zeroes a random quarter of the values, so no single one can be relied on |
# | `Flatten()` | the 12×12×64 block as one row of 9,216 numbers |
# | `Dense(400, relu)` | 400 units, each a weighted sum of all 9,216 numbers |
# | `Dropout(0.5)` | zeroes half of them during training |
# | `Dense(10, softmax)` | ten scores, one per class, turned into probabilities that sum to 1 |
#
# **ReLU** (rectified linear unit) keeps positive values and sets negative ones to 0: "how much of this pattern is
# here", never less than nothing. It is what lets stacked layers learn more than one big weighted sum could.
#
# It is the same net as `fmnist/models.py`'s `build_cnn`, the `cnn` of `python fashion_mnist.py`.

# %%
from keras import layers


def build_baseline(dropout=True):
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        *([layers.Dropout(0.25)] if dropout else []),
        layers.Flatten(),
        layers.Dense(400, activation="relu"),
        *([layers.Dropout(0.5)] if dropout else []),
        layers.Dense(10, activation="softmax", name="predictions"),
    ], name="cnn")


model = build_baseline()
model.summary()

from fmnist.models import build_model

assert model.count_params() == build_model("cnn").count_params()  # the same net as the project's

# %% [markdown]
# **Compile** picks how the model learns:
# - the **loss**, the number training makes smaller: *sparse categorical cross-entropy*, which is −log(the
#   probability the model gives the true class). Sure and right costs almost 0; 50 % on the true class costs 0.69;
#   1 % costs 4.6. ("Sparse": the labels are class numbers 0–9, not one-hot rows.)
# - the **optimizer**, the rule that nudges every weight against its gradient (the direction that raises the
#   loss) after each batch: Adam, with a **learning rate** of 0.001, the size of the nudge;
# - the **metrics** to print: accuracy, the share of images whose most probable class is the true one.
#
# **Fit** then shows the images in shuffled **batches** of 64: one step per batch, and one epoch per pass. The
# curves below are redrawn at the end of every epoch, on the training images and on the validation images.

# %%
model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])


class LiveCurves(keras.callbacks.Callback):
    """Redraws the training curves (fmnist.figures.plot_histories) in place at the end of every epoch."""

    def __init__(self, title):
        super().__init__()
        self.title, self.history, self.handle = title, {}, None

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        fig = fig_lib.plot_histories({"baseline": self.history}, title=f"{self.title}, after epoch {epoch + 1}")
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)


fit_started = time.monotonic()
history = model.fit(x_train[..., None], y_train, batch_size=64, epochs=EPOCHS, validation_data=(x_val[..., None],
                    y_val), callbacks=[LiveCurves("The baseline cnn learning")], verbose=0)
fit_seconds = time.monotonic() - fit_started
print(f"{EPOCHS} epochs in {fit_seconds:.0f} s; validation accuracy by epoch:",
      [f"{a:.3f}" for a in history.history["val_accuracy"]])

# %% [markdown]
# Training accuracy climbs as long as you train; validation accuracy is the one that says how well the model does
# on pictures it has not learned from. When the training loss keeps falling while the validation loss turns up,
# the model has started to learn its training images by heart (**overfitting**).

# %% [markdown]
# ## 3. How the trained CNN sees one garment
#
# Now we follow one test image through the trained network, layer by layer.

# %%
probe_index = 0  # the first test image
probe = x_test[probe_index]
activations = {}
x = probe[None, ..., None].astype("float32")  # a batch of one: shape (1, 28, 28, 1)
for layer in model.layers:
    x = layer(x, training=False)
    activations[layer.name] = keras.ops.convert_to_numpy(x)[0]
print(f"{'layer':<14} {'output shape':<14} {'numbers':>8}   test image {probe_index}: {CLASS_NAMES[y_test[0]]}")
print(f"{'input':<14} {'(28, 28, 1)':<14} {784:>8,}")
for name, value in activations.items():
    print(f"{name:<14} {str(value.shape):<14} {value.size:>8,}")

# %% [markdown]
# **One learned filter.** The first conv layer has 32 filters of 3×3 weights (and one bias each). Below is the
# filter that responds most to this image, as numbers. Its map is computed by hand: put the 3×3 window on every
# position of the 28×28 image (26×26 positions fit), multiply the nine pixels by the nine weights, add them up
# and add the bias. Our sum matches Keras's output.

# %%
conv = model.get_layer("conv2d")
kernels, biases = (keras.ops.convert_to_numpy(w) for w in conv.weights)  # (3, 3, 1, 32) and (32,)
pixels = probe.astype("float32") / 255  # what the Rescaling layer hands the conv layer
k = int(np.argmax(activations["conv2d"].mean(axis=(0, 1))))
weights = kernels[:, :, 0, k]
by_hand = np.array([[np.sum(pixels[r:r + 3, c:c + 3] * weights) + biases[k] for c in range(26)]
                    for r in range(26)])
keras_map = activations["conv2d"][:, :, k]  # after ReLU
print(f"filter {k} of conv2d:\n{np.round(weights, 2)}\nbias {biases[k]:.3f}")
print("largest difference, hand-made map after ReLU vs Keras's:", float(np.abs(np.maximum(by_hand, 0) -
                                                                         keras_map).max()))

fig, axes = plt.subplots(1, 4, figsize=(15, 4), layout="constrained")
axes[0].imshow(probe, cmap="gray", vmin=0, vmax=255)
axes[0].set_title("the image")
axes[1].imshow(weights, cmap="RdBu_r", vmin=-abs(weights).max(), vmax=abs(weights).max())
for (r, c), w in np.ndenumerate(weights):
    axes[1].text(c, r, f"{w:.2f}", ha="center", va="center", fontsize=12)
axes[1].set_title(f"filter {k}: 3×3 weights (red +, blue −)")
limit = abs(by_hand).max()
shown = axes[2].imshow(by_hand, cmap="RdBu_r", vmin=-limit, vmax=limit)
axes[2].set_title("its map: weighted sums (red +, blue −)")
fig.colorbar(shown, ax=axes[2], shrink=0.8)
shown = axes[3].imshow(keras_map, cmap="viridis", vmin=0)
axes[3].set_title("after ReLU: negatives set to 0")
fig.colorbar(shown, ax=axes[3], shrink=0.8)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# **What ReLU keeps, and what pooling keeps.** ReLU keeps where the pattern is present (positive sums) and drops
# where it is absent. Max pooling then keeps, of each 2×2 block, only its strongest response: the map halves in
# width and height (24×24 → 12×12), still saying *that* the pattern is there and roughly *where*, and a shift of
# one pixel barely changes it.

# %%
second = activations["conv2d_1"]
channel = int(np.argmax(second.mean(axis=(0, 1))))
pooled = activations["max_pooling2d"][:, :, channel]
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), layout="constrained")
for ax, values, title in ((axes[0], second[:, :, channel], f"conv2d_1, filter {channel}: 24×24 after ReLU"),
                          (axes[1], pooled, "after 2×2 max pooling: 12×12")):
    shown = ax.imshow(values, cmap="viridis", vmin=0, vmax=second[:, :, channel].max())
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(shown, ax=axes, shrink=0.8, label="response")
plt.show()

# %% [markdown]
# The most active maps of both conv layers (the report of every run draws this figure):

# %%
from fmnist.evaluation import conv_feature_maps

display(fig_lib.plot_feature_maps(probe, conv_feature_maps(model, probe),
                                  title=f"Feature maps of test image {probe_index} ({CLASS_NAMES[y_test[0]]})"))

# %% [markdown]
# **Flatten, dense, softmax and the loss, by hand.** Flatten lines the 12×12×64 block up as 9,216 numbers, the
# dense layer of 400 units makes 400 weighted sums of them (ReLU again), and the last layer makes ten **logits**:
# one weighted sum of the 400 per class. **Softmax** turns the logits into probabilities: e^logit, divided by the
# sum of all ten. The loss for this image is −log(probability of the true class).

# %%
hidden = activations["dense"]  # the 400 numbers after Dense(400) and ReLU (Dropout does nothing at test time)
w, b = (keras.ops.convert_to_numpy(v) for v in model.get_layer("predictions").weights)  # (400, 10), (10,)
logits = hidden @ w + b
softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()  # minus the max: no overflow
true = y_test[probe_index]
loss_by_hand = -np.log(softmax[true])
loss_keras = float(keras.losses.sparse_categorical_crossentropy(y_test[:1], model.predict(probe[None, ..., None],
                                                                                           verbose=0))[0])
print(f"flatten: {activations['flatten'].shape[0]:,} numbers -> dense: {hidden.shape[0]} -> logits: 10")
for c in np.argsort(-softmax)[:3]:
    print(f"  {CLASS_NAMES[c]:<12} logit {logits[c]:6.2f}   probability {softmax[c]:.4f}")
print(f"cross-entropy loss by hand: {loss_by_hand:.5f}; Keras's: {loss_keras:.5f}")

# %% [markdown]
# ## 4. Evaluate once, on the test set

# %%
test_loss, test_accuracy = model.evaluate(x_test[..., None], y_test, verbose=0)
probabilities = model.predict(x_test[..., None], verbose=0)
predicted = probabilities.argmax(axis=1)
print(f"test accuracy {test_accuracy:.2%}, loss {test_loss:.3f}: {np.sum(predicted != y_test):,} mistakes in "
      f"{len(y_test):,}")

# %% [markdown]
# **The confusion matrix**: one row per true class, one column per predicted class. The diagonal holds the right
# answers; everything else is a mistake, and the right panel shows each row as shares. Shirts are the hard class.

# %%
from fmnist.evaluation import confusion_matrix

matrix = confusion_matrix(y_test, predicted)
display(fig_lib.plot_confusion_matrix(matrix, CLASS_NAMES, title=f"The baseline on the test set: "
                                      f"{test_accuracy:.2%}"))

# %% [markdown]
# **The most confident mistakes.** Look closely: for several of them the label is at least debatable.

# %%
confidence = probabilities.max(axis=1)
wrong = np.flatnonzero(predicted != y_test)
worst = wrong[np.argsort(-confidence[wrong])][:18]
display(fig_lib.plot_predictions(x_test[worst], y_test[worst], predicted[worst], confidence[worst], CLASS_NAMES,
                                 title="The 18 mistakes the model was surest of", columns=6))

# %% [markdown]
# **Ten probabilities per image**, as TensorFlow's "Basic classification" tutorial draws them: a confident right
# answer is one tall green bar; a hesitation spreads over the classes that look alike.

# %%
shown = np.concatenate([np.flatnonzero(predicted == y_test)[:4], wrong[:2]])
display(fig_lib.plot_probabilities(x_test[shown], y_test[shown], probabilities[shown], CLASS_NAMES))

# %% [markdown]
# **Why it decided: Grad-CAM on Shirt against T-shirt/top.** Grad-CAM asks the trained model: "if this region of
# the picture were a little stronger, how much would your score for *Shirt* rise?" It measures that on the last
# conv layer's maps (where each cell still has a place in the image) and paints the answer over the picture:
# red where the evidence for the class lies, blue where there is none. Each map is scaled to its own strongest
# point, so compare where the red sits, not how red it is. Below: four shirts and four T-shirts, some of each taken
# for the other, with the evidence for each class.

# %%
from fmnist.explain import confused_pair_figure

shirt_as_tshirt = int(matrix[CLASS_NAMES.index("Shirt"), CLASS_NAMES.index("T-shirt/top")])
display(confused_pair_figure(model, x_test, y_test, probabilities,
                             {"true": "Shirt", "predicted": "T-shirt/top", "count": shirt_as_tshirt}))

# %% [markdown]
# Read the maps as questions to the model. Does the evidence for *Shirt* sit where a person would look (the
# collar and neckline, a button placket, long sleeves) and the evidence for *T-shirt/top* on short sleeves and a
# plain neck? Or on the outline, which both classes share? After a few epochs on 10,000 images much of it still
# sits on the neckline and the edges. At 28×28 pixels a button placket is one or two pixels wide, which is why
# these two classes stay the hardest pair for every model in this project.

# %% [markdown]
# ## 5. Guided experiments
#
# Each experiment changes one line, trains a fresh model from scratch for as many epochs as the baseline above,
# and compares its best **validation** accuracy with the baseline's (the test set stays untouched). Change a line
# and run the cell again to try your own.

# %%
def describe(name, run, images, seconds):
    val_loss = run["val_loss"]
    print(f"{name}: {images:,} images, {seconds:.0f} s | best validation accuracy {max(run['val_accuracy']):.2%} | "
          f"training accuracy at the end {run['accuracy'][-1]:.2%} | validation loss lowest at epoch "
          f"{int(np.argmin(val_loss)) + 1}, last {val_loss[-1]:.3f} (lowest {min(val_loss):.3f})")


def experiment(name, build=build_baseline, learning_rate=1e-3, images=None):
    keras.utils.set_random_seed(SEED)
    net = build()
    net.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    n = len(x_train) if images is None else images
    began = time.monotonic()
    results[name] = net.fit(x_train[:n, ..., None], y_train[:n], batch_size=64, epochs=EPOCHS,
                            validation_data=(x_val[..., None], y_val), verbose=0).history
    describe(name, results[name], n, time.monotonic() - began)


results = {"baseline": history.history}  # the run above: the same images, batch size and epochs
describe("baseline", results["baseline"], len(x_train), fit_seconds)

# %% [markdown]
# **Experiment 1: no dropout.** The change: `build=lambda: build_baseline(dropout=False)`.
# *Expect* training accuracy to climb faster and the validation loss to stop falling sooner and turn up: without
# dropout the wide dense layer can memorise the training images.

# %%
experiment("no dropout", build=lambda: build_baseline(dropout=False))

# %% [markdown]
# **Experiment 2: learning rate ×10.** The change: `learning_rate=1e-2`.
# *Expect* worse results: with steps ten times as large, Adam overshoots, and the loss jumps around or stalls.

# %%
experiment("learning rate x10", learning_rate=1e-2)

# %% [markdown]
# **Experiment 3: a 10 % subset.** The change: `images=len(x_train) // 10`.
# *Expect* a few points less: fewer examples of each class to learn from, and a wider gap between training and
# validation accuracy.

# %%
experiment("10 % of the images", images=len(x_train) // 10)

# %% [markdown]
# **Experiment 4: an MLP against the CNN.** The change: `build=lambda: build_model("mlp")`, the project's
# multi-layer perceptron: Flatten, then Dense 512 and 256, no convolutions.
# *Expect* it to train faster per epoch but to score lower: it has to learn every pattern at every position
# separately, where a conv filter learns it once and slides it everywhere.

# %%
experiment("MLP instead of CNN", build=lambda: build_model("mlp"))

# %%
display(fig_lib.plot_histories(results, title="The guided experiments (validation), epoch by epoch",
                               validation_only=True))
print(f"{'experiment':<22} {'best validation accuracy':>25} {'vs baseline':>12}")
for name, run in results.items():
    best = max(run["val_accuracy"])
    print(f"{name:<22} {best:>25.2%} {best - max(results['baseline']['val_accuracy']):>+12.2%}")

# %% [markdown]
# ## 6. Ship it: one ONNX file that runs without TensorFlow
#
# `model.export(..., format="onnx")` writes the trained network as an ONNX file, a format many runtimes read.
# Below, a separate Python process with only `onnxruntime` and NumPy (it checks that TensorFlow is not loaded)
# classifies the first test images from the raw 0–255 pixels. The project's own
# `python fashion_mnist.py export models/RUN.keras` does the same and also checks every exported file against
# Keras on the whole test set.

# %%
import shutil
import subprocess
import tempfile
import warnings

folder = Path(tempfile.mkdtemp(prefix="tour-"))
onnx_path = folder / "baseline.onnx"
with warnings.catch_warnings():  # the converter (tf2onnx) warns about NumPy names it checks for
    warnings.simplefilter("ignore", FutureWarning)
    model.export(str(onnx_path), format="onnx", verbose=False)
np.save(folder / "images.npy", x_test[:8, ..., None].astype("float32"))
runner = f"""
import sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession({str(onnx_path)!r})
images = np.load({str(folder / "images.npy")!r})
probabilities = session.run(None, {{session.get_inputs()[0].name: images}})[0]
print("tensorflow loaded:", "tensorflow" in sys.modules)
print(" ".join(str(i) for i in probabilities.argmax(axis=1)))
"""
onnx_output = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, check=True).stdout
print(f"{onnx_path.name}: {onnx_path.stat().st_size / 1e6:.1f} MB")
print(onnx_output.splitlines()[0])
onnx_classes = [int(c) for c in onnx_output.split()[-8:]]
print("ONNX Runtime:", [CLASS_NAMES[c] for c in onnx_classes])
print("Keras:       ", [CLASS_NAMES[c] for c in predicted[:8]])
assert onnx_classes == list(predicted[:8])
shutil.rmtree(folder)  # the file was only for this demonstration

# %%
print(f"The whole tour took {time.monotonic() - started:.0f} s (training the baseline: {fit_seconds:.0f} s).")

# %% [markdown]
# ## Where to go next
#
# - `python fashion_mnist.py` trains the same `cnn` on all 54,000 images with flips and a cosine schedule (the
#   learning rate glides down to 0 over the run), about 93.5 % in 5–20 minutes; `--model fast` reaches about
#   93 % in a few minutes on a CPU.
# - `tensorboard --logdir=tensorboard_logs` shows every run's curves and its predictions at every epoch.
# - `python fashion_mnist.py predict models/RUN.keras your-photo.jpg --explain` classifies your own pictures
#   and draws the Grad-CAM maps.
# - *Dive into Deep Learning* (d2l.ai) teaches softmax regression, the MLP, LeNet and modern CNNs on this same data
#   set; `--model mlp` and `--model lenet` are here to compare.
