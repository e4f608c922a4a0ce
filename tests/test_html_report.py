"""report.html and `compare`: self-contained pages built from what a run folder holds."""

import base64
import csv
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

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
def runs(tmp_path_factory, course_run, species):
    """A line run with pictures (r1) and a classification table run (cls): copies of the
    session's course run and multiclass table run (conftest.py), as the reports are written
    into their folders; and three learning rates without pictures."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(course_run[0], root / "r1")
    shutil.copytree(species[0] / "run", root / "cls")
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


class Element:
    """One element of a parsed page: its tag, its attributes, and what it holds (elements and
    text, in order)."""

    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag, self.attrs = tag, attrs
        self.children: list[Element | str] = []

    def text(self) -> str:
        """Its text as a reader sees it: character references decoded, tags left out."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children).strip()

    def walk(self):
        """This element and every element inside it, in the order of the page."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.walk()

    def find(self, tag: str) -> list["Element"]:
        return [e for e in self.walk() if e.tag == tag]

    def cells(self) -> list["Element"]:
        """The <th> and <td> cells of a <tr>."""
        return [c for c in self.children if isinstance(c, Element) and c.tag in ("th", "td")]


class TreeParser(HTMLParser):
    """The page as a tree of Elements (for pages that parse() has found well formed)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("", {})
        self.open = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.open[-1].children.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.open[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag not in VOID:
            assert self.open.pop().tag == tag

    def handle_data(self, data):
        self.open[-1].children.append(data)


def tree(text: str) -> Element:
    parse(text)  # well formed, every tag closed where it should be
    parser = TreeParser()
    parser.feed(text)
    parser.close()
    return parser.root


def section(text: str, name: str) -> Element:
    """The page's <section id="NAME">, parsed."""
    (found,) = [e for e in tree(text).find("section") if e.attrs.get("id") == name]
    return found


def rows(table: Element) -> list[list[str]]:
    """The text of every cell of a table, row by row, the header rows first."""
    return [[cell.text() for cell in tr.cells()] for tr in table.find("tr")]


def facts(element: Element) -> dict[str, str]:
    """The report's fact cards (<div class="fact"><b>LABEL</b>VALUE</div>) as {LABEL: VALUE}."""
    cards = [e for e in element.find("div") if "fact" in e.attrs.get("class", "").split()]
    found = {}
    for card in cards:
        (label,) = card.find("b")
        found[label.text()] = card.text().removeprefix(label.text()).strip()
    return found


def captioned_tables(element: Element) -> dict[str, Element]:
    """Each table under the caption before it (the text of an <h3> or a <summary>)."""
    tables, caption = {}, None
    for e in element.walk():
        if e.tag in ("h3", "summary"):
            caption = e.text()
        elif e.tag == "table":
            assert caption not in tables, caption
            tables[caption] = e
    return tables


def metrics_table(element: Element) -> dict[tuple[str, str], dict[str, float]]:
    """The metrics table as {(split, model): {heading: number}}: a row that starts with a
    <th> names its split; a row without one is another model on the split above it."""
    (table,) = element.find("table")
    header, *body = table.find("tr")
    headings = [cell.text() for cell in header.cells()]
    assert headings[:2] == ["split", "model"], headings
    found, split = {}, None
    for tr in body:
        cells = tr.cells()
        if cells[0].tag == "th":
            split, cells = cells[0].text(), cells[1:]
        model, *numbers = [cell.text() for cell in cells]
        assert (split, model) not in found, (split, model)
        found[split, model] = dict(zip(headings[2:], map(float, numbers), strict=True))
    return found


# The metric names of summary.json as the report's column headings.
HEADING = {
    "mae": "MAE",
    "mse": "MSE",
    "rmse": "RMSE",
    "r2": "R²",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
}


def headed(values: dict[str, float]) -> dict[str, float]:
    return {HEADING[name]: value for name, value in values.items()}


def predictions(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    """predictions.csv of a run, read with the csv module: (its header, its rows)."""
    with open(folder / "predictions.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


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
    # Every split's row holds its own numbers, the learned model's and the reference's.
    expected = {}
    for split, values in s["metrics"].items():
        expected[split, "learned"] = headed(values)
        expected[split, "closed-form"] = headed(s["reference"]["metrics"][split])
    shown = metrics_table(metrics)
    assert list(shown) == list(expected)
    for key, values in expected.items():
        assert shown[key] == pytest.approx(values, abs=1e-6), key  # shown to 6 decimals
    assert "closed-form" in metrics.text() and "lstsq" in metrics.text()


def test_learned_parameters_beside_closed_form_and_true(runs, line_report):
    _, text = line_report
    s = summary(runs / "r1")
    line, _ = section(text, "parameters").find("table")  # then every learned tensor
    header, *body = rows(line)
    assert header == ["", "learned", "closed-form", "true", "|learned − true|"]
    shown = {name: [float(v) for v in values] for name, *values in body}
    assert list(shown) == ["weight", "bias"]
    assert s["true"] == {"weight": 0.7, "bias": 0.3}  # the course's true line
    for name, learned in (
        ("weight", s["learned"]["weights"][0]),
        ("bias", s["learned"]["bias"][0]),
    ):
        exact, true = s["reference"][name][0], s["true"][name]
        expected = [learned, exact, true, abs(learned - true)]
        assert shown[name] == pytest.approx(expected, abs=5e-5), name  # shown to 4 decimals


def test_split_timings_versions_and_config_are_shown(runs, line_report):
    _, text = line_report
    s = summary(runs / "r1")
    (split,) = section(text, "data").find("table")
    header, *body = rows(split)
    assert header == ["split", "rows", "share"]
    assert {name: int(count) for name, count, _ in body} == {"train": 40, "test": 10, "all": 50}
    assert s["rows"] == {"train": 40, "test": 10}
    training = facts(section(text, "training"))
    assert s["epochs_run"] == 100 and not s["stopped_early"]
    assert training["Epochs run"] == "100" and training["Stopped early"] == "no"
    (versions,) = section(text, "versions").find("table")
    assert dict(rows(versions)) == s["versions"]
    assert s["versions"]["torch"] and s["versions"]["torchwork"]
    config = {}
    for table in section(text, "config").find("table"):
        (group,), *settings = rows(table)
        config[group] = dict(settings)
    written = tomllib.loads((runs / "r1" / "config.toml").read_text())
    # Only the settings that apply to the line run: no table's, picture's or classifier's
    # settings, no cross-validation repeats, no tol_epochs while tol is 0 (it is off).
    assert written["train"]["tol"] == 0 and written["train"]["optimizer"] == "sgd"
    left_out = {"repeats", "class_weight", "tol_epochs"}
    assert set(config["[train]"]) == set(written["train"]) - left_out
    assert config["[train]"]["lr"] == "0.01" and config["[train]"]["epochs"] == "100"
    assert config["[train]"]["momentum"] == "0.0"  # sgd takes it
    assert set(config["[data]"]) == {
        *("weight", "bias", "start", "end", "step", "noise"),
        *("train", "val", "test", "shuffle"),
    }
    assert set(config["[model]"]) == {"kind"}  # the course's model_0 has no hidden layers
    assert "threshold" not in config["top level"] and "interval" in config["top level"]


def test_classification_report_has_confusion_matrix_and_majority_class(runs, table_report):
    _, text = table_report
    s = summary(runs / "cls")
    labels, target = s["labels"], s["data"]["target"]
    header, written = predictions(runs / "cls")
    assert header[:3] == ["split", target, "prediction"]
    # The counts, made here from predictions.csv: [split][actual, predicted].
    counted: dict[str, Counter] = {}
    for row in written:
        counted.setdefault(row["split"], Counter())[row[target], row["prediction"]] += 1
    assert set(labels) == {row[target] for row in written}
    # A transposed table must fail below: the fixture's test split is not symmetric.
    test = counted["test"]
    assert any(test[a, p] != test[p, a] for a in labels for p in labels), test

    tables = captioned_tables(section(text, "confusion"))
    assert set(s["confusion_matrix"]) == set(counted)
    assert list(tables) == [
        f"{split} ({sum(counted[split].values())} rows)"
        for split in ("test", "val", "train")
        if split in counted
    ]
    for caption, table in tables.items():
        split = caption.split()[0]
        head, *body = table.find("tr")
        assert [cell.text() for cell in head.cells()] == ["actual \\ predicted", *labels]
        assert [tr.cells()[0].text() for tr in body] == labels
        for i, (actual, tr) in enumerate(zip(labels, body, strict=True)):
            cells = tr.cells()[1:]
            assert [int(cell.text()) for cell in cells] == [
                counted[split][actual, p] for p in labels
            ]
            assert [int(cell.text()) for cell in cells] == s["confusion_matrix"][split][i]
            diagonal = ["diag" in cell.attrs["class"].split() for cell in cells]
            assert diagonal == [j == i for j in range(len(labels))]

    # Accuracy per split, and the majority class of the training split as the reference.
    trained_on = Counter(row[target] for row in written if row["split"] == "train")
    majority = trained_on.most_common(1)[0][0]
    assert s["reference"]["label"] == majority
    metrics = section(text, "metrics")
    shown = metrics_table(metrics)
    for split, counts in counted.items():
        rows_in_split = sum(counts.values())
        right = sum(counts[label, label] for label in labels)
        assert shown[split, "learned"]["accuracy"] == pytest.approx(right / rows_in_split, abs=1e-6)
        assert shown[split, "learned"] == pytest.approx(headed(s["metrics"][split]), abs=1e-6)
        always = sum(n for (actual, _), n in counts.items() if actual == majority)
        reference = shown[split, "majority class"]
        assert reference["accuracy"] == pytest.approx(always / rows_in_split, abs=1e-6)
        assert reference == pytest.approx(headed(s["reference"]["metrics"][split]), abs=1e-6)
    assert f"always predicting {s['reference']['label']}" in metrics.text()
    parameters = section(text, "parameters")
    (tensors,) = parameters.find("table")
    assert "linear_layer.weight" in [row[0] for row in rows(tensors)[1:]]
    assert "closed-form" not in parameters.text()  # no true line for a table


def test_predictions_are_previewed_not_embedded(runs, table_report):
    _, text = table_report
    header, written = predictions(runs / "cls")
    assert len(written) > PREVIEW_ROWS
    preview = section(text, "predictions")
    (table,) = preview.find("table")
    shown = rows(table)
    assert shown[0] == header
    # The first rows, cell by cell (none is long enough to be shortened): the rows' own
    # values and the predicted labels as written, the probabilities rounded for reading.
    probabilities = [name.startswith("probability_") for name in header]
    assert sum(probabilities) == 3  # the classes
    assert len(shown) == PREVIEW_ROWS + 1
    for cells, row in zip(shown[1:], written, strict=False):
        for cell, name, rounded in zip(cells, header, probabilities, strict=True):
            if not rounded:
                assert cell == row[name], name
            else:
                assert_rounded(cell, float(row[name]))
    assert f"({len(written)} rows)" in preview.text()


def assert_rounded(cell: str, value: float) -> None:
    """4 decimals, or 4 significant digits in scientific notation for a tiny value."""
    if 0 < abs(value) < 1e-4:
        assert re.fullmatch(r"-?\d\.\d{3}e-\d+", cell), cell
        assert float(cell) == pytest.approx(value, rel=5e-4), cell
    else:
        assert re.fullmatch(r"-?\d+\.\d{4}", cell), cell
        assert float(cell) == pytest.approx(value, abs=5e-5), cell


def test_tiny_probabilities_are_rounded_for_reading(runs, tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(runs / "cls", folder)
    header, written = predictions(folder)
    values = ["0.0000024566723", "0.99999756", "1.2345678e-12", "0.5", "1", "0"]
    for row, value in zip(written, values * 2, strict=False):
        row[header[-1]] = value
    with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(written)
    (table,) = section(write_report(folder).read_text(), "predictions").find("table")
    shown = [row[-1] for row in rows(table)[1 : len(values) + 1]]
    assert shown == ["2.457e-06", "1.0000", "1.235e-12", "0.5000", "1.0000", "0.0000"]


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
    # and a reader sees the text as it was written
    (versions,) = section(text, "versions").find("table")
    assert dict(rows(versions))["<script>alert(1)</script>"] == '"><img src=x onerror=alert(1)>'
    for table in captioned_tables(section(text, "confusion")).values():
        assert rows(table)[0][1] == "<b>setosa</b>"


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
    (table,) = section(out_html.read_text(), "table").find("table")
    header, *body = rows(table)
    assert header == ["", "lr-0.01", "lr-0.05", "lr-0.1"]
    shown = {label: values for label, *values in body}
    assert shown["train.lr"] == ["0.01", "0.05", "0.1"]
    assert shown["MAE"] == [f"{v:.6f}" for v in final]
    for unchanged in ("train.epochs", "data.weight", "model.kind", "train.optimizer"):
        assert unchanged not in shown


def test_compare_marks_the_points_of_short_loss_curves(runs):
    from torchwork.report.compare import _loss_overlay
    from torchwork.runfolder import read_run_folder

    folders = [read_run_folder(runs / f"lr-{lr}") for lr in ("0.01", "0.1")]
    (ax,) = _loss_overlay(folders, ["a", "b"]).axes
    assert len(ax.lines) == 4  # train and test of each
    for line in ax.lines:
        assert len(line.get_xdata()) == 3  # 30 epochs, recorded every 10
        assert line.get_marker() not in (None, "", "None", " "), line.get_label()


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
