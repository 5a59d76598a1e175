"""fmnist/ship/predict.py: `predict` on a user's pictures of any size and colour agrees with the model, prints the
top 3, and survives hostile or unlucky files."""

import json

import numpy as np
import pytest
from conftest import assert_clean_error, run_script

from fmnist import CLASS_NAMES


@pytest.fixture(scope="module")
def confident_test_images(tiny_run):
    """Test images the tiny model classifies with a clear margin, its predictions, and the loaded model."""
    from fmnist.data import load_fashion_mnist
    from fmnist.evaluation import load_model, predict_probabilities

    out, _, _ = tiny_run
    model = load_model(out / "models" / "tiny.keras")
    images = load_fashion_mnist().x_test[:300]
    probabilities = predict_probabilities(model, images)
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    confident = np.flatnonzero(top2[:, 1] - top2[:, 0] > 0.5)
    # one per predicted class where possible, so that different kinds of garment are checked
    _, first = np.unique(probabilities[confident].argmax(1), return_index=True)
    chosen = confident[first][:6]
    assert len(chosen) >= 4
    return images[chosen], probabilities[chosen].argmax(1), model


def product_photo(image, seed):
    """The garment small and off-centre, dark on a noisy off-white 400x300 background, in colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    garment = np.asarray(Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC), dtype=float)
    photo = np.full((300, 400), 245.0) + rng.normal(0, 3, (300, 400))
    photo[40:152, 200:312] = np.minimum(photo[40:152, 200:312], garment)
    return Image.fromarray(np.stack([photo, photo * 0.98, photo * 0.95], -1).clip(0, 255).astype(np.uint8))


@pytest.mark.slow
def test_dataset_images_come_back_unchanged_and_resized_ones_close(confident_test_images):
    from PIL import Image

    from fmnist.ship.predict import to_dataset_form

    images, _, _ = confident_test_images
    differences = []
    for image in images:
        assert np.array_equal(to_dataset_form(image), image)
        assert np.array_equal(to_dataset_form(255 - image), image)  # dark on light is inverted back
        big = np.asarray(Image.fromarray(image).resize((200, 200), Image.Resampling.LANCZOS))
        differences.append(np.abs(to_dataset_form(big).astype(int) - image).mean())
        photo = np.asarray(product_photo(image, seed=0).convert("L"))
        differences.append(np.abs(to_dataset_form(photo).astype(int) - image).mean())
    assert np.mean(differences) < 20  # out of 255: resampling blurs a little, the garment stays in place


@pytest.mark.slow
def test_predict_agrees_with_the_model_on_pngs_of_any_size_and_colour(confident_test_images, tiny_run, tmp_path):
    from PIL import Image

    images, expected, _ = confident_test_images
    files, wanted = [], []
    for i, (image, label) in enumerate(zip(images, expected, strict=True)):
        for size in (28, 56, 200):
            picture = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
            files.append(tmp_path / f"{i}-{size}.png")
            picture.save(files[-1])
            wanted.append(label)
        inverted = Image.fromarray(255 - image).resize((120, 120), Image.Resampling.LANCZOS).convert("RGB")
        files.append(tmp_path / f"{i}-inverted.jpg")  # dark on white, as a colour JPEG
        inverted.save(files[-1], quality=95)
        files.append(tmp_path / f"{i}-photo.jpg")
        product_photo(image, seed=i).save(files[-1], quality=90)
        wanted += [label, label]
    missing, not_an_image = tmp_path / "missing.png", tmp_path / "notes.png"
    not_an_image.write_text("hello")

    out, _, _ = tiny_run
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", files[0], missing, *files[1:],
                      not_an_image, "--json")
    assert proc.returncode == 1  # some files failed, the others were still predicted
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 2
    results = {r["file"]: r for r in json.loads(proc.stdout)}
    assert "file not found" in results[str(missing)]["error"] and "error" in results[str(not_an_image)]
    for path, label in zip(files, wanted, strict=True):
        top = results[str(path)]["top"]
        assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
        assert top[0]["class"] == CLASS_NAMES[label], path.name


@pytest.mark.slow
def test_predict_prints_the_top_3_as_text(confident_test_images, tiny_run, tmp_path):
    from PIL import Image

    images, expected, _ = confident_test_images
    Image.fromarray(images[0]).save(tmp_path / "one.png")
    out, _, _ = tiny_run
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", tmp_path / "one.png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{tmp_path / 'one.png'}: {CLASS_NAMES[expected[0]]} ") and line.count("%") == 3


def _png_of_black(path, width, height):
    """A PNG of width x height black pixels, written row by row: a few KB on disk however large it claims to be."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (width + 1)  # filter byte 0, then one grey byte a pixel
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_near_blank_and_blank_pictures_take_the_dataset_form():
    from fmnist.ship.predict import to_dataset_form

    speck = np.zeros((1000, 1000), np.uint8)
    speck[500, 500] = 100  # the blur rounds this away: before, rows.min() of nothing raised ValueError
    assert to_dataset_form(speck).shape == (28, 28)
    assert not to_dataset_form(np.zeros((300, 200), np.uint8)).any()
    line = np.zeros((1, 5000), np.uint8)
    line[0, 10:20] = 200
    assert to_dataset_form(line).shape == (28, 28)


@pytest.mark.slow
def test_predict_survives_hostile_and_unlucky_files(confident_test_images, tiny_run, tmp_path):
    """A decompression bomb, an image just over the pixel limit, a PostScript file named .png and a near-blank
    picture each get one line (or a prediction); every good file is still predicted, and the exit code is 1."""
    from PIL import Image

    images, expected, _ = confident_test_images
    good = tmp_path / "good.png"
    Image.fromarray(images[0]).save(good)
    bomb = _png_of_black(tmp_path / "bomb.png", 13_500, 13_500)  # over twice Pillow's limit: it raised
    big = _png_of_black(tmp_path / "big.png", 7_000, 6_000)  # 42 megapixels: under Pillow's limit, over ours
    eps = tmp_path / "drawing.png"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n")
    speck = np.zeros((1000, 1000), np.uint8)
    speck[500, 500] = 100
    near_blank = tmp_path / "near-blank.png"
    Image.fromarray(speck).save(near_blank)
    good_jpeg = tmp_path / "good.jpg"
    Image.fromarray(images[1]).save(good_jpeg, quality=95)

    out, _, _ = tiny_run
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", bomb, good, big, eps,
                      near_blank, good_jpeg, "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "DecompressionBomb" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, proc.stderr[-2000:]
    results = {r["file"]: r for r in json.loads(proc.stdout)}
    assert "megapixels" in results[str(bomb)]["error"] and "megapixels" in results[str(big)]["error"]
    assert "PNG, JPEG, BMP, GIF or WebP" in results[str(eps)]["error"]
    assert len(results[str(near_blank)]["top"]) == 3
    assert results[str(good)]["top"][0]["class"] == CLASS_NAMES[expected[0]]
    assert results[str(good_jpeg)]["top"][0]["class"] == CLASS_NAMES[expected[1]]


@pytest.mark.slow
def test_predict_on_a_folder_writes_one_csv_row_per_image_and_flags_what_is_no_garment(confident_test_images,
                                                                                        tiny_run, tmp_path):
    import csv

    from PIL import Image

    images, expected, _ = confident_test_images
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    wanted = {}
    for i, (image, label) in enumerate(zip(images[:4], expected[:4], strict=True)):
        path = folder / ("sub" if i % 2 else ".") / f"g{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(image).save(path, quality=95)
        wanted[str(path)] = CLASS_NAMES[label]
    Image.new("L", (60, 60), 255).save(folder / "blank.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / "noise.png")
    (folder / "sub" / "broken.png").write_text("not a picture")
    (folder / "notes.txt").write_text("not an image: skipped, not an error")
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)  # not followed
    out, _, _ = tiny_run
    table = tmp_path / "predictions.csv"
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", folder, "--csv", table)
    assert proc.returncode == 1, proc.stderr[-2000:]  # one file failed
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {folder / 'sub' / 'broken.png'}: not an image this command reads (use PNG, JPEG, BMP, GIF or WebP)"]
    with open(table, newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert len(rows) == 7 and "notes.txt" not in str(rows)
    for path, label in wanted.items():
        assert rows[path]["top_class"] == label and rows[path]["top3"].count(";") == 2
    assert rows[str(folder / "noise.png")]["not_a_garment"] == "True"
    assert rows[str(folder / "blank.png")]["not_a_garment"] == "True"
    assert sum(rows[path]["not_a_garment"] == "True" for path in wanted) <= 1
    assert rows[str(folder / "sub" / "broken.png")]["error"].endswith("GIF or WebP)")
    assert "6 of 7 images classified, " in proc.stderr.splitlines()[-1]
    before = table.read_bytes()
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", folder, "--csv", table)
    assert_clean_error(proc, 1, "predictions.csv already exists")
    assert table.read_bytes() == before
