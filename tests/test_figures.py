"""fmnist/figures.py: the report's figures that a training run writes as PNG files."""

import pytest
from conftest import PNG_MAGIC, png_size


@pytest.mark.slow
def test_a_training_run_writes_the_report_figures(tiny_run):
    out, _, record = tiny_run
    assert set(record["figures"]) == {"confusion", "misclassified", "feature-maps", "confused-pair"}  # cnn: convs
    for name, path in record["figures"].items():
        assert path == str(out / "history" / f"tiny-{name}.png")
        assert open(path, "rb").read(8) == PNG_MAGIC
        width, height = png_size(path)
        assert width > 800 and height > 250
