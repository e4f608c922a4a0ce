"""What the pages say about a run: the data a run learned from in words, only the settings
that apply to it, captions that say how to read a picture, and pictures that show something
however short the run."""

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from torchwork.plots import FEW_POINTS, plot_loss_curves

LINE = {"weight", "bias", "start", "end", "step", "noise"}
TABLE = {"target", "features", "dropna", "categorical", "scale", "delimiter", "decimal"}
IMAGE = {"image_size", "channels", "augment"}
SMALL = ["--epochs", "1", "--hidden", "4", "--image-size", "8", "--no-plots"]  # a CNN, quickly


def page_text(html: str, section: str) -> str:
    """The text of one <section id=...> of report.html, tags left out, spaces collapsed."""
    found = re.search(rf'<section id="{section}">(.*?)</section>', html, re.S)
    assert found, section
    text = re.sub(r"<[^>]+>", " ", found.group(1))
    return re.sub(r"\s+", " ", text).replace("&#x27;", "'").strip()


def shown_settings(html: str) -> dict[str, set[str]]:
    """The keys of the report's config tables, by their heading ([data], [train], ...)."""
    config = re.search(r'<section id="config">(.*?)<details>', html, re.S)
    assert config
    found = {}
    for table in re.findall(r"<table>(.*?)</table>", config.group(1), re.S):
        (group,) = re.findall(r'<th colspan="2">(.*?)</th>', table)
        found[group] = set(re.findall(r"<tr><th><code>(.*?)</code>", table))
    return found


def card_settings(card: str) -> dict:
    """The TOML block of the card's settings, read back."""
    block = card.split("```toml\n", 1)[1].split("```", 1)[0]
    return tomllib.loads(block)


def write_pictures(root: Path, counts: dict[str, int]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_a_folder_run_says_what_the_folder_is_and_shows_its_settings(tw, tmp_path):
    write_pictures(tmp_path / "pets", {"cat": 5, "dog": 7})
    code, _, err = tw("run", "--data", "pets", *SMALL, "--out", "r")
    assert code == 0, err
    html = (tmp_path / "r" / "report.html").read_text()
    data = page_text(html, "data")
    assert "The folder pets : a folder of 12 images in 2 class folders: cat 5, dog 7" in data
    assert "The table" not in data and "features" not in data
    shown = shown_settings(html)
    assert shown["[data]"] >= IMAGE and "skip_bad" in shown["[data]"]
    assert not (LINE | TABLE) & shown["[data]"], shown["[data]"]
    assert "hidden" in shown["[model]"]  # the CNN's widths
    assert "interval" not in shown["top level"] and "threshold" in shown["top level"]  # binary

    card = (tmp_path / "r" / "MODEL_CARD.md").read_text()
    assert "- A folder of 12 images in 2 class folders: cat 5, dog 7; the class is the target" in (
        card
    )
    settings = card_settings(card)
    assert set(settings["data"]) >= IMAGE and not (LINE | TABLE) & set(settings["data"])
    written = tomllib.loads((tmp_path / "r" / "config.toml").read_text())
    for group, values in settings.items():  # the card's values are the run's
        if isinstance(values, dict):
            assert values == {key: written[group][key] for key in values}, group
        else:
            assert values == written[group], group


def test_a_balanced_folder_is_so_many_per_class(tw, tmp_path):
    write_pictures(tmp_path / "pets", {"cat": 6, "dog": 6, "eel": 6})
    code, _, err = tw("run", "--data", "pets", *SMALL, "--out", "r")
    assert code == 0, err
    html = (tmp_path / "r" / "report.html").read_text()
    assert "a folder of 18 images in 3 class folders, 6 per class" in page_text(html, "data")
    assert "threshold" not in shown_settings(html)["top level"]  # three classes


def test_a_table_run_shows_the_table_settings_and_not_the_line_or_pictures(
    tw, tmp_path, small_table_files
):
    data = str(small_table_files / "regression.csv")
    code, _, err = tw("run", "--data", data, "--epochs", "5", "--no-plots", "--out", "r")
    assert code == 0, err
    html = (tmp_path / "r" / "report.html").read_text()
    assert "300 rows: target price , features a, b." in page_text(html, "data")
    shown = shown_settings(html)
    assert TABLE | {"scale_target", "path"} <= shown["[data]"]
    assert not (LINE | IMAGE) & shown["[data]"]
    assert shown["[model]"] == {"kind"}  # linear: no hidden layers
    assert "momentum" not in shown["[train]"]  # lbfgs takes none
    card = (tmp_path / "r" / "MODEL_CARD.md").read_text()
    assert not (LINE | IMAGE) & set(card_settings(card)["data"])
    assert "config.toml` holds them and the" in card


def test_the_reliability_caption_says_how_to_read_it(tw, tmp_path, small_table_files):
    data = str(small_table_files / "binary.csv")
    args = ["--calibrate", "--train", "0.6", "--val", "0.2", "--epochs", "10"]
    code, _, err = tw("run", "--data", data, *args, "--out", "r")
    assert code == 0, err
    html = (tmp_path / "r" / "report.html").read_text()
    captions = dict(
        (source, caption)
        for caption, source in re.findall(
            r'<figcaption>(.*?) <span class="muted">(plots/[^<]+)</span>', html
        )
    )
    caption = captions["plots/reliability.png"]
    scores = json.loads((tmp_path / "r" / "summary.json").read_text())["calibration"]
    test = scores["splits"]["test"]
    assert "predicted probability" in caption and "observed frequency" in caption
    assert "diagonal" in caption and "perfectly calibrated" in caption
    assert f"{test['ece_before']:.4f} before" in caption
    assert f"{test['ece_after']:.4f} after" in caption
    assert "shuffled" in captions["plots/importance.png"]


@pytest.mark.parametrize("points", [1, 3, FEW_POINTS - 1])
def test_a_short_loss_curve_marks_its_points(points):
    epochs = list(range(0, 10 * points, 10))
    fig = plot_loss_curves(epochs, [0.5] * points, [0.6] * points, [0.7] * points)
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    for line in ax.lines:
        assert len(line.get_xdata()) == points
        assert line.get_marker() not in (None, "", "None", " "), line.get_label()
        assert line.get_markersize() > 0


def test_a_long_loss_curve_is_a_plain_line():
    epochs = list(range(FEW_POINTS))
    fig = plot_loss_curves(epochs, [1.0 / (e + 1) for e in epochs])
    (line,) = fig.axes[0].lines
    assert line.get_marker() in (None, "", "None", " ")
