"""Fashion-MNIST training package.

Importing it is cheap: nothing here imports TensorFlow until a function needs it,
so `--help` and usage errors answer at once.
"""

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIDE = 28  # every image is IMAGE_SIDE x IMAGE_SIDE greyscale, 0-255

