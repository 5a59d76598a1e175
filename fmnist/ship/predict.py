"""Classify your own pictures: turn a PNG, JPEG, BMP, GIF or WebP into a Fashion-MNIST-like 28x28 image, then
predict.

The dataset's images are light garments on a black background, trimmed to the garment, its longer side resized
to 28 pixels and the result centred in the 28x28 frame. Photos are brought to that form before the model sees them.
"""

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES
from fmnist import IMAGE_SIDE as SIDE
from fmnist.errors import UserError, first_line

TOP = 3
OBJECT_THRESHOLD = 0.05  # brighter than this share of the brightest pixel: the garment, not background noise
# Decoding costs about 26 bytes a pixel; 40 megapixels (a large phone photo) is about 1 GB at most.
MAX_PIXELS = 40_000_000
# Only these decoders: detected by content, an EPS under any name would otherwise run Ghostscript.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")


def _border(image):
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def to_dataset_form(grey):
    """A 2-D uint8 array of any size -> (28, 28) uint8, light on dark, the garment fitted and centred.

    A 28x28 picture is taken as already in that form (only its colours are made to match), so the dataset's own
    images come back unchanged.
    """
    from PIL import Image, ImageFilter

    grey = np.asarray(grey, dtype="float32")
    if _border(grey).mean() > 127:  # a light background (a product photo): the dataset's is black
        grey = 255 - grey
    grey = np.clip(grey - np.median(_border(grey)), 0, 255)  # a grey backdrop becomes black too
    if grey.shape == (SIDE, SIDE):
        return np.round(grey).astype(np.uint8)
    if grey.max() == 0:
        return np.zeros((SIDE, SIDE), np.uint8)  # a blank picture: nothing to fit
    # Find the garment on a blurred copy, so that specks of noise or JPEG artefacts do not widen its box.
    blurred = np.asarray(Image.fromarray(grey.astype(np.uint8)).filter(
        ImageFilter.BoxBlur(max(1, round(max(grey.shape) / 100)))), dtype="float32")
    if blurred.max() == 0:  # the blur rounded away every lit pixel: specks of noise on a blank picture
        return np.zeros((SIDE, SIDE), np.uint8)
    rows, cols = np.nonzero(blurred > OBJECT_THRESHOLD * blurred.max())
    crop = grey[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = SIDE / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # PIL takes (w, h)
    fitted = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)), 0, 255)
    # Centred with the odd pixel of margin before the object, which is how the dataset's images sit.
    top, left = (SIDE - fitted.shape[0] + 1) // 2, (SIDE - fitted.shape[1] + 1) // 2
    canvas = np.zeros((SIDE, SIDE), "float32")
    canvas[top:top + fitted.shape[0], left:left + fitted.shape[1]] = fitted
    return np.round(canvas).astype(np.uint8)


def read_image(path):
    """The image file as a 2-D greyscale uint8 array; transparency is laid over white, EXIF rotation applied.

    Only PNG, JPEG, BMP, GIF and WebP are opened, and only up to MAX_PIXELS: the size is read from the header,
    before anything is decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice it: here that is an error, like above it.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as opened:
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    raise UserError(f"{path}: {width:,} x {height:,} pixels is over the limit of "
                                    f"{MAX_PIXELS / 1e6:g} megapixels; make it smaller")
                if width == 0 or height == 0:
                    raise UserError(f"{path}: the image has no pixels ({width} x {height})")
                image = ImageOps.exif_transpose(opened)
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
                return np.asarray(image.convert("L"))
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image this command reads (use PNG, JPEG, BMP, GIF or WebP)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: too many pixels to decode safely (over {MAX_PIXELS / 1e6:g} megapixels); "
                        "make it smaller") from None
    except Exception as e:  # noqa: BLE001 - a broken file can make a decoder raise almost anything
        raise UserError(f"{path}: cannot read the image ({first_line(e)})") from None


def top_classes(probabilities, count=TOP):
    order = np.argsort(-probabilities)[:count]
    return [{"class": CLASS_NAMES[i], "probability": float(probabilities[i])} for i in order]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what a folder is searched for
PROGRESS_FROM = 100  # images: a progress line on a terminal from this many


def image_files(paths):
    """The files to classify: each file named, and every image file (by its suffix) under each folder named, in
    order, recursively. Links to folders are not followed, so a folder that links to itself ends."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                found += [Path(folder) / name for name in sorted(names) if name.lower().endswith(IMAGE_SUFFIXES)]
        else:
            found.append(path)
    return found


def predict_files(model_path, image_paths, as_json=False, explain=False, csv_path=None):
    """The `predict` command. Every file is tried; a failed one gets a one-line error on stderr (and an entry
    with "error" in the JSON and the CSV), and the exit code is 1 when any failed.

    `model_path` is a .keras model or a file from `export` (.onnx, .tflite): the same output from each.
    `image_paths` are files or folders (searched recursively for images). Each result carries the "doesn't look
    like a garment" flag (fmnist.ship.ood). `explain` writes <image>-explained.png beside each image
    (fmnist.explain), for a .keras model; `csv_path` gets one row per image.
    """
    from fmnist.ship.ood import calibration_for, flags
    from fmnist.ship.runtimes import open_model

    if csv_path is not None and os.path.lexists(csv_path):
        raise UserError(f"{csv_path} already exists; not overwriting it (give --csv a new file)")
    files = image_files(image_paths)
    if not files:
        raise UserError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, image_paths))}")
    runner = open_model(model_path)
    if explain and runner.kind != "keras":
        raise UserError(f"{model_path}: --explain needs the .keras model (the heat maps need its gradients)")
    calibration = calibration_for(runner, model_path)
    results, images = [], []
    for done, path in enumerate(files, 1):
        try:
            images.append(to_dataset_form(read_image(path)))
            results.append({"file": str(path)})
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            results.append({"file": str(path), "error": str(e)})
        _progress(done, len(files))
    if images:
        images = np.stack(images)
        probabilities = runner.probabilities(images)
        flagged, scores = flags(calibration, images, probabilities)
        done = [result for result in results if "error" not in result]
        for result, p, flag, score in zip(done, probabilities, flagged, scores, strict=True):
            result.update(top=top_classes(p), not_a_garment=bool(flag), ood_score=round(float(score), 3))
        if explain:
            paths = write_explanations(runner.model, images, probabilities, [r["file"] for r in done])
            for result, path in zip(done, paths, strict=True):
                result["explained"] = str(path)
    if csv_path is not None:
        write_csv(csv_path, results)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)
    return _summarise(results, csv_path)


def _summarise(results, csv_path):
    """For a batch, a closing line on stderr; the exit code: 1 when any file failed."""
    failed = sum("error" in result for result in results)
    if len(results) > 1:
        flagged = sum(result.get("not_a_garment", False) for result in results)
        print(f"{len(results) - failed:,} of {len(results):,} images classified, {flagged:,} flagged as not like a "
              f"garment{f', {failed:,} failed' if failed else ''}" + (f"; rows in {csv_path}" if csv_path else ""),
              file=sys.stderr)
    return 1 if failed else 0


def print_results(results):
    for result in results:
        if "top" in result:
            guesses = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top"])
            warning = f"  [doesn't look like a garment: score {result['ood_score']:.2f}]" \
                if result["not_a_garment"] else ""
            print(f"{result['file']}: {guesses}{warning}")
            if "explained" in result:
                print(f"  why: {result['explained']}")


def _progress(done, total):
    """A progress line on stderr for a large batch, on a terminal only (a pipe or a file gets the summary)."""
    if total >= PROGRESS_FROM and sys.stderr.isatty():
        print(f"\rreading images: {done:,}/{total:,}", end="\n" if done == total else "", file=sys.stderr,
              flush=True)


CSV_COLUMNS = ("file", "top_class", "probability", "top3", "not_a_garment", "ood_score", "error")


def write_csv(path, results):
    """One row per image (CSV_COLUMNS), through the safe writer: a new file, never a replaced one."""
    import csv
    import io

    from fmnist.run.files import write_file

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        top = r.get("top", [])
        writer.writerow([r["file"], top[0]["class"] if top else "", f"{top[0]['probability']:.4f}" if top else "",
                         "; ".join(f"{t['class']} {t['probability']:.4f}" for t in top),
                         r.get("not_a_garment", ""), r.get("ood_score", ""), r.get("error", "")])
    write_file(Path(path), text.getvalue().encode(), new=True)


def write_explanations(model, images, probabilities, image_paths):
    """For each image: <image stem>-explained.png beside the image file (a free name: never replacing one), with
    the image and the heat maps for the top class and the runner-up. Returns the paths written."""
    from fmnist.explain import heat_maps, method_name
    from fmnist.figures import figure_png, plot_explanation
    from fmnist.run.files import write_file
    from fmnist.run.names import free_name

    order = np.argsort(-probabilities, axis=1)
    top, second = heat_maps(model, images, order[:, 0]), heat_maps(model, images, order[:, 1])
    written = []
    for i, image_path in enumerate(map(Path, image_paths)):
        panels = [(heat[i], f"{CLASS_NAMES[c]} {probabilities[i, c]:.1%}" + ("" if heat[i].any() else "\n(none found)"))
                  for heat, c in ((top, order[i, 0]), (second, order[i, 1]))]
        fig = plot_explanation(images[i], panels, title=f"{image_path.name}: {method_name(model)}")
        folder = image_path.parent
        stem = free_name(folder, f"{image_path.stem}-explained", [".png"])
        written.append(write_file(folder / f"{stem}.png", figure_png(fig), new=True))
    return written
