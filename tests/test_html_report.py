"""report.html and `compare`: self-contained pages built from what a run folder holds."""

import base64
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import write_csv
from torchwork.cli import main
from torchwork.errors import TorchworkError
from torchwork.report.compare import compare_runs
from torchwork.report.html import PREVIEW_ROWS, write_report

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class StrictParser(HTMLParser):
    """Collects every tag and checks that each closing tag closes the innermost open one."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(text: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(text)
    parser.close()
    assert parser.doctype, "no <!DOCTYPE html>"
    assert not parser.errors, parser.errors[:5]
    assert not parser.stack, f"tags left open: {parser.stack}"
    return parser


def assert_self_contained(text: str) -> StrictParser:
    """Valid HTML that fetches nothing: no scripts, no stylesheets, no web addresses."""
    page = parse(text)
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), (tag, attrs)
        for name in ("src", "href", "srcset", "action", "poster"):
            value = attrs.get(name, "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "ftp:", "file:")), (tag, attrs)
            if tag == "img" and name == "src":
                assert value.startswith("data:image/png;base64,"), value[:40]
    assert "http://" not in text and "https://" not in text
    assert "@import" not in text and "@font-face" not in text
    return page


def embedded_pngs(page: StrictParser) -> list[bytes]:
    return [
        base64.b64decode(attrs["src"].split(",", 1)[1])
        for tag, attrs in page.tags
        if tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,")
    ]


def run(*args: str) -> None:
    assert main(["run", *args]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A line run with pictures, a small classification table run, three learning rates."""
    root = tmp_path_factory.mktemp("runs")
    run("--epochs", "30", "--out", str(root / "r1"))
    rng = np.random.default_rng(3)
    k = rng.integers(0, 3, 150)
    points = np.array([[0, 0], [4, 0], [0, 4]])[k] + rng.normal(size=(150, 2))
    species = np.array(["setosa", "versicolor", "virginica"])[k]
    write_csv(root / "iris.csv", {"p": points[:, 0], "q": points[:, 1], "species": species})
    run("--data", str(root / "iris.csv"), "--epochs", "30", "--out", str(root / "cls"))
    for lr in ("0.01", "0.05", "0.1"):
        run("--epochs", "30", "--lr", lr, "--no-plots", "--out", str(root / f"lr-{lr}"))
    return root


@pytest.fixture(scope="module")
def line_report(runs):
    path = write_report(runs / "r1")
    return path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def table_report(runs):
    path = write_report(runs / "cls")
    return path, path.read_text(encoding="utf-8")


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def section(text: str, name: str) -> str:
    start = text.index(f'<section id="{name}">')
    return text[start : text.index("</section>", start)]


def test_report_is_written_in_the_run_folder_atomically(runs, line_report):
    path, _ = line_report
    assert path == runs / "r1" / "report.html"
    assert not list((runs / "r1").glob(".report.html.*"))
    assert write_report(str(runs / "r1")) == path  # again, from a string: replaced in place


def test_report_is_valid_self_contained_html(line_report, table_report):
    for _, text in (line_report, table_report):
        page = assert_self_contained(text)
        assert any(tag == "meta" and attrs.get("name") == "viewport" for tag, attrs in page.tags)
        assert "<style>" in text


def test_every_picture_is_embedded_byte_for_byte(runs, line_report, table_report):
    for folder, (_, text) in (("r1", line_report), ("cls", table_report)):
        pngs = sorted((runs / folder / "plots").glob("*.png"))
        assert pngs
        assert text.count("data:image/png") == len(pngs)
        assert sorted(embedded_pngs(parse(text))) == sorted(p.read_bytes() for p in pngs)


def test_metrics_appear_beside_the_reference(runs, line_report):
    _, text = line_report
    s = summary(runs / "r1")
    metrics = section(text, "metrics")
    for split, values in s["metrics"].items():
        for name, value in values.items():
            assert f"{value:.6f}" in metrics, (split, name)
            assert f"{s['reference']['metrics'][split][name]:.6f}" in metrics, (split, name)
    assert "closed-form" in metrics and "lstsq" in metrics
    assert "<td>learned</td>" in metrics


def test_learned_parameters_beside_closed_form_and_true(runs, line_report):
    _, text = line_report
    s = summary(runs / "r1")
    parameters = section(text, "parameters")
    assert f"{s['learned']['weights'][0]:.4f}" in parameters
    assert f"{s['learned']['bias'][0]:.4f}" in parameters
    assert f"{s['reference']['weight'][0]:.4f}" in parameters
    assert "0.7000" in parameters and "0.3000" in parameters  # the course's true line
    assert f"{abs(s['learned']['weights'][0] - 0.7):.4f}" in parameters


def test_split_timings_versions_and_config_are_shown(runs, line_report):
    _, text = line_report
    s = summary(runs / "r1")
    data = section(text, "data")
    assert re.search(r"<th>train</th><td class=\"num\">40</td>", data)
    assert re.search(r"<th>test</th><td class=\"num\">10</td>", data)
    training = section(text, "training")
    assert "Epochs run</b>30<" in training and "Stopped early</b>no<" in training
    versions = section(text, "versions")
    assert s["versions"]["torch"] in versions and s["versions"]["torchwork"] in versions
    config = section(text, "config")
    assert "[train]" in config and "<code>lr</code>" in config and "<code>0.01</code>" in config


def test_classification_report_has_confusion_matrix_and_majority_class(runs, table_report):
    _, text = table_report
    s = summary(runs / "cls")
    confusion = section(text, "confusion")
    for label in s["labels"]:
        assert f"<th>{label}</th>" in confusion
    for row in s["confusion_matrix"]["test"]:
        for count in row:
            assert f">{count}</td>" in confusion
    metrics = section(text, "metrics")
    assert "majority class" in metrics and s["reference"]["label"] in metrics
    assert f"{s['metrics']['test']['accuracy']:.6f}" in metrics
    assert "linear_layer.weight" in section(text, "parameters")
    assert "closed-form" not in section(text, "parameters")  # no true line for a table


def test_predictions_are_previewed_not_embedded(runs, table_report):
    _, text = table_report
    rows = (runs / "cls" / "predictions.csv").read_text().splitlines()
    assert len(rows) - 1 > PREVIEW_ROWS
    preview = section(text, "predictions")
    assert preview.count("<tr>") == PREVIEW_ROWS + 1  # the header and the first rows
    assert f"({len(rows) - 1} rows)" in preview


def test_text_from_the_files_is_escaped(runs, tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(runs / "cls", folder)
    s = summary(folder)
    s["versions"]["<script>alert(1)</script>"] = '"><img src=x onerror=alert(1)>'
    s["labels"][0] = "<b>setosa</b>"
    (folder / "summary.json").write_text(json.dumps(s))
    text = write_report(folder).read_text()
    assert_self_contained(text)
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>setosa" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;setosa&lt;/b&gt;" in text


def test_report_without_pictures_says_so(runs):
    text = write_report(runs / "lr-0.05").read_text()
    assert_self_contained(text)
    assert "data:image/png" not in text and "--no-plots" in text


def test_module_imports_without_torch():
    code = "import sys, torchwork.report.html, torchwork.report.compare; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_compare_shows_only_the_keys_that_differ(runs, tmp_path):
    folders = [runs / f"lr-{lr}" for lr in ("0.01", "0.05", "0.1")]
    out_png, out_html = tmp_path / "compare.png", tmp_path / "compare.html"
    text = compare_runs(folders, out_png=out_png, out_html=out_html)
    lines = text.splitlines()
    assert lines[0].split() == ["lr-0.01", "lr-0.05", "lr-0.1"]
    assert ["train.lr", "0.01", "0.05", "0.1"] in [line.split() for line in lines]
    for unchanged in ("train.epochs", "data.weight", "model.kind", "train.optimizer"):
        assert unchanged not in text
    final = [summary(f)["metrics"]["test"]["mae"] for f in folders]
    assert ["MAE", *(f"{v:.6f}" for v in final)] in [line.split() for line in lines]
    assert out_png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = assert_self_contained(out_html.read_text())
    assert embedded_pngs(page) and embedded_pngs(page)[0].startswith(b"\x89PNG")
    html_text = out_html.read_text()
    assert "train.lr" in html_text and "train.epochs" not in html_text


def test_compare_without_outputs_writes_nothing(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = compare_runs([str(runs / "r1"), str(runs / "lr-0.1")])
    assert "train.lr" in text and "MAE" in text
    assert not list(tmp_path.iterdir())


def test_compare_labels_runs_with_the_same_name_by_path(runs, tmp_path):
    shutil.copytree(runs / "lr-0.01", tmp_path / "lr-0.01")
    text = compare_runs([runs / "lr-0.01", tmp_path / "lr-0.01"])
    assert str(tmp_path / "lr-0.01") in text.splitlines()[0]
    assert "none: the configs are the same" in text


def one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.count(". ") == 0, message
    return message


def test_compare_needs_two_run_folders(runs):
    for folders in ([], [runs / "r1"]):
        with pytest.raises(TorchworkError, match="at least two run folders") as e:
            compare_runs(folders)
        one_sentence(e)


def test_errors_for_folders_that_are_not_finished_runs(runs, tmp_path):
    with pytest.raises(TorchworkError, match="does not exist") as e:
        compare_runs([runs / "r1", tmp_path / "missing"])
    one_sentence(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TorchworkError, match="no summary.json") as e:
        write_report(tmp_path / "empty")
    one_sentence(e)
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(runs / "r1" / "summary.json", half)
    with pytest.raises(TorchworkError, match="no config.toml") as e:
        compare_runs([runs / "r1", half])
    one_sentence(e)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("summary.json", b"{not json", "is not valid JSON"),
        ("summary.json", b"[1, 2]", "is not a torchwork summary"),
        ("config.toml", b"[train\nlr = ", "is not valid TOML"),
        ("config.toml", b"\xff\xfe\x00bad", "cannot read"),
        ("metrics.csv", b"epoch,train_loss\n0,oops\n", "not a number"),
        ("plots/loss_curves.png", b"not a picture", "is not a PNG picture"),
    ],
)
def test_errors_for_unreadable_files(runs, tmp_path, name, content, message):
    folder = tmp_path / "broken"
    shutil.copytree(runs / "r1", folder)
    (folder / "report.html").unlink(missing_ok=True)
    (folder / name).write_bytes(content)
    with pytest.raises(TorchworkError, match=message) as e:
        write_report(folder)
    assert str(folder / name) in one_sentence(e)
    assert not (folder / "report.html").exists()


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    chromium() is None,
    reason="no chromium or chromium-browser on PATH: the browser check needs one",
)
@pytest.mark.parametrize("width", [1280, 390])  # a laptop, a phone
def test_report_renders_in_headless_chromium(line_report, tmp_path, width):
    browser = chromium()
    path, _ = line_report
    shot = tmp_path / f"report-{width}.png"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            f"--window-size={width},2000",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 0, result.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG")
