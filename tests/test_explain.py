"""Heat maps: Grad-CAM builds for every convolutional architecture (and a BatchNormalization net) and saliency for
the mlp; each map adds up to the class score's change from a black image; on a trained model the heat lies on the
garment (and a noise map fails that test) and differs from an untrained net's; `predict --explain` and the
report draw them."""

import json

import numpy as np
import pytest
from conftest import assert_clean_error, run_script

from fmnist import CLASS_NAMES


@pytest.mark.parametrize("name", ["cnn", "lenet", "fast", "balanced", "best", "resnet18", "resnet20", "mlp"])
def test_heat_maps_build_for_every_architecture(name):
    import keras

    from fmnist.explain import MIN_SIDE, feature_layer, heat_maps, method_name
    from fmnist.models import build_model

    keras.utils.set_random_seed(0)
    # Width 16: TensorFlow 2.21's oneDNN kernels crash backpropagating through narrower nets' convolutions for
    # batches of 1, 3 or 5 images (docs/experiments.md).
    model = build_model(name, resnet_width=16)
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    heat = heat_maps(model, images, [0, 5, 9])
    assert heat.shape == (3, 28, 28) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    if name == "mlp":
        assert feature_layer(model) is None and method_name(model) == "input-gradient saliency"
        assert (heat.max(axis=(1, 2)) == 1).all()  # every pixel moves an untrained mlp's logits a little
    else:
        layer = feature_layer(model)
        assert method_name(model).startswith("Grad-CAM") and layer.name in method_name(model)
        assert layer.output.shape[1] >= MIN_SIDE
        # best: the ReLU that ends its 14x14 block (convolution, batch norm, ReLU); fast and balanced pool their
        # 14x14 convolution before its batch norm, so the convolution itself; resnet18 and resnet20: the output
        # of their second stage's last block
        expected = {"cnn": (24, "conv2d"), "lenet": (10, "conv2d"), "fast": (14, "conv2d"),
                    "balanced": (14, "conv2d"), "best": (14, "re_lu"),
                    "resnet18": (14, "re_lu"), "resnet20": (14, "re_lu")}[name]
        assert (layer.output.shape[1], layer.name.rstrip("_0123456789")) == expected


def bn_net():
    """A net like `fast` but with blocks of Conv2D (no bias), BatchNormalization and ReLU, and a global-pool head."""
    import keras
    from keras import layers

    blocks = []
    for stage, channels in enumerate((8, 16, 32)):
        blocks += [layers.MaxPooling2D(2)] if stage else []
        blocks += [layers.Conv2D(channels, 3, padding="same", use_bias=False), layers.BatchNormalization(),
                   layers.ReLU(name=f"block{stage}_out")]
    return keras.Sequential([keras.Input((28, 28, 1)), layers.Rescaling(1 / 255), *blocks,
                             layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")], name="bn")


def test_a_batch_normalized_block_is_explained_after_its_activation(tmp_path):
    """Conv2D → BatchNormalization → ReLU: the maps are the block's output (the ReLU's), at 14x14; also when the
    model is loaded from a file (a loaded Sequential model has a graph per layer added; the maps use the last)."""
    import keras

    from fmnist.explain import feature_layer, heat_maps, method_name, receptive_field_centres

    keras.utils.set_random_seed(2)
    model = bn_net()
    model.save(tmp_path / "bn.keras")
    images = np.random.default_rng(2).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    for net in (model, keras.saving.load_model(tmp_path / "bn.keras", compile=False)):
        assert feature_layer(net).name == "block1_out" and "block1_out, 14x14" in method_name(net)
        assert receptive_field_centres(net, feature_layer(net)) == [(0.5, 2), (0.5, 2)]
        heat = heat_maps(net, images, [3, 7])
        assert heat.shape == (2, 28, 28) and np.isfinite(heat).all()


def test_maps_are_placed_on_their_receptive_fields():
    """Where each position of the explained map is centred in the image: padded layers keep the map centred on the
    image, unpadded ones (cnn, lenet) shrink it towards the middle, pooling halves the resolution."""
    from fmnist.explain import feature_layer, receptive_field_centres
    from fmnist.models import build_model

    for name, geometry in [("cnn", (2.0, 1)), ("lenet", (4.5, 2)), ("fast", (0.5, 2)), ("balanced", (0.5, 2)),
                           ("best", (0.5, 2)), ("resnet18", (1.0, 2)), ("resnet20", (1.0, 2))]:
        model = build_model(name, resnet_width=8)
        assert receptive_field_centres(model, feature_layer(model)) == [geometry, geometry], name


def test_a_map_adds_up_to_the_class_scores_change_from_a_black_image():
    """The faithfulness that the method is chosen for: over all positions, before the positive part is taken, the
    map of a class adds up to how much its logit differs from the logit of an all-black image."""
    import keras

    from fmnist.explain import attributions
    from fmnist.models import build_model

    keras.utils.set_random_seed(3)
    images = np.random.default_rng(3).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    classes = np.array([0, 3, 6, 9])
    for model in (build_model("lenet"), bn_net()):
        dense = model.layers[-1]
        before_softmax = keras.Model(model.inputs[0], dense.input)
        logits = [np.asarray(before_softmax(x)) @ np.asarray(dense.kernel) + np.asarray(dense.bias)
                  for x in (images[..., None].astype("float32"), np.zeros((4, 28, 28, 1), "float32"))]
        change = (logits[0] - logits[1])[np.arange(4), classes]
        total = attributions(model, images, classes, steps=64).sum(axis=(1, 2))
        np.testing.assert_allclose(total, change, rtol=0.02, atol=0.02 * np.abs(change).max())


def test_heat_maps_of_a_batch_are_each_images_own():
    """One gradient of the summed scores gives every image its own map: the same as one image at a time."""
    import keras

    from fmnist.explain import heat_maps
    from fmnist.models import build_model

    keras.utils.set_random_seed(1)
    model = build_model("lenet")
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    together = heat_maps(model, images, [1, 2, 3, 4])
    alone = np.concatenate([heat_maps(model, images[i:i + 1], [i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def share_hotter_on_the_garment(heat, images):
    """The share of images whose mean heat on the garment (pixels > 0) exceeds that on the background."""
    garment = images > 0
    inside = (heat * garment).sum(axis=(1, 2)) / garment.sum(axis=(1, 2))
    outside = (heat * ~garment).sum(axis=(1, 2)) / (~garment).sum(axis=(1, 2))
    return float((inside > outside).mean())


GARMENT_SHARE = 0.75  # "most test images", well above the 50 % that a map unrelated to the image scores


def test_the_garment_test_passes_a_map_of_the_garment_and_fails_noise():
    """The negative control of the test below: the measure itself tells a map of the garment from noise."""
    from fmnist.data import load_fashion_mnist

    images = load_fashion_mnist().x_test[:300]
    images = images[(images == 0).any(axis=(1, 2))]  # a few fill the whole frame: no background to compare
    assert share_hotter_on_the_garment((images > 0).astype("float32"), images) == 1.0
    noise = np.random.default_rng(0).random(images.shape).astype("float32")
    assert 0.3 < share_hotter_on_the_garment(noise, images) < GARMENT_SHARE
    assert share_hotter_on_the_garment(noise * 0.5 + 0.5 * (images > 0), images) >= GARMENT_SHARE


@pytest.mark.slow
def test_heat_lies_on_the_garment_for_most_test_images(fast_run):
    """On the briefly trained `fast` net, for the class it predicts. keras-io's Grad-CAM (last Conv2D, mean
    gradients) fails this: its heat lies on the black around sneakers, boots and sleeves."""
    import keras

    from fmnist.data import load_fashion_mnist
    from fmnist.explain import heat_maps

    model_path, _ = fast_run
    model = keras.saving.load_model(model_path, compile=False)
    images = load_fashion_mnist().x_test[:1000]
    images = images[(images == 0).any(axis=(1, 2))]
    predicted = model.predict(images[..., None].astype("float32"), verbose=0).argmax(axis=1)
    share = share_hotter_on_the_garment(heat_maps(model, images, predicted), images)
    assert share >= GARMENT_SHARE, f"{share:.1%} of {len(images)} test images are hotter on the garment"


@pytest.mark.slow
def test_the_maps_come_from_what_the_model_learned(fast_run):
    """Model randomisation (Adebayo et al. 2018): the test above cannot tell a trained net from an untrained one,
    whose maps lie on the garment too (they follow the activations' change from the black image), so the maps
    of the trained net must differ from those of the same architecture freshly initialised. A map that the
    architecture or the image alone decides (edges, the garment's outline) would fail this."""
    import keras

    from fmnist.data import load_fashion_mnist
    from fmnist.explain import heat_maps
    from fmnist.models import build_model

    model_path, _ = fast_run
    trained = keras.saving.load_model(model_path, compile=False)
    keras.utils.set_random_seed(0)
    untrained = build_model("fast")
    images = load_fashion_mnist().x_test[:300]
    predicted = trained.predict(images[..., None].astype("float32"), verbose=0).argmax(axis=1)
    a, b = (heat_maps(net, images, predicted).reshape(len(images), -1) for net in (trained, untrained))
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    correlation = np.mean((a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1) + 1e-12))
    assert correlation < 0.5, f"trained and untrained maps correlate {correlation:.2f}"


@pytest.mark.slow
def test_predict_explain_writes_an_explained_image_beside_each_photo_never_overwriting(fast_run, tmp_path):
    from PIL import Image

    from fmnist.data import load_fashion_mnist

    model, _ = fast_run
    photo = tmp_path / "photo.jpg"
    Image.fromarray(255 - np.kron(load_fashion_mnist().x_test[0], np.ones((8, 8), np.uint8))).save(photo)
    (tmp_path / "photo-explained.png").write_bytes(b"the user's own file")
    proc = run_script("fashion_mnist.py", "predict", model, photo, "--explain", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = json.loads(proc.stdout)
    assert result["explained"] == str(tmp_path / "photo-explained-2.png")
    assert (tmp_path / "photo-explained.png").read_bytes() == b"the user's own file"
    with Image.open(result["explained"]) as explained:
        assert explained.format == "PNG" and explained.width > 2.2 * explained.height  # three panels, a title above
    proc = run_script("fashion_mnist.py", "predict", model, photo, tmp_path / "missing.png", "--explain")
    assert proc.returncode == 1 and f"{photo}: {result['top'][0]['class']}" in proc.stdout
    assert f"why: {tmp_path / 'photo-explained-3.png'}" in proc.stdout
    assert_clean_error(proc, 1, "missing.png: file not found")


def test_confused_pair_shows_both_classes_on_a_few_images_of_each():
    from fmnist.explain import pick_confused_pair

    labels = np.array([6, 0, 6, 6, 0, 0, 6, 3, 0, 6])
    predicted = np.array([0, 0, 6, 0, 6, 0, 6, 3, 0, 0])
    chosen = pick_confused_pair(labels, predicted, 6, 0, per_class=3)
    # Shirts first (two taken for T-shirts, then a right one), then T-shirts (the one taken for a shirt, then right
    # ones).
    assert chosen.tolist() == [0, 3, 2, 4, 1, 5]


@pytest.mark.slow
def test_the_report_has_the_confused_pair_figure_in_png_and_tensorboard(fast_run):
    from conftest import read_tensors

    model, record = fast_run
    pair = record["test"]["most_confused"][0]
    assert pair["true"] in CLASS_NAMES
    path = record["figures"]["confused-pair"]
    assert path.endswith("history/fast-confused-pair.png") and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    images, _ = read_tensors(model.parent.parent / "tensorboard_logs" / "fast" / "test")
    assert "test/confused-pair" in images
