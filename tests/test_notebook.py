"""The notebook experience: examples/01_pytorch_workflow.ipynb executed in a real kernel, and
what torchwork's objects show in Jupyter (History, the models, a run's result, the live
loss curves), checked without a kernel."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import torchwork
from torchwork import (
    MLP,
    History,
    LinearRegressionModel,
    RunFolderPath,
    build_model,
    fit,
    make_line,
    make_loss,
    make_optimizer,
    plot_predictions,
    split,
)
from torchwork.notebook import LiveLossCurves, in_notebook

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "01_pytorch_workflow.ipynb"
PNG = b"\x89PNG\r\n\x1a\n"
SECTIONS = [
    "1. Data (preparing and loading)",
    "2. Build model",
    "3. Train model",
    "4. Making predictions / evaluating",
    "5. Saving and loading",
    "6. Putting it all together",
]

# Run after the notebook's own cells, in the same kernel: a live view whose fake clock lets
# every update redraw, so the output must be replaced in place, three times over.
REDRAW_CELL = """
from torchwork.notebook import LiveLossCurves

now = [0.0]
view = LiveLossCurves(3, clock=lambda: now[0])
records = []
for epoch in range(3):
    now[0] += 100.0
    records.append({"epoch": epoch, "train_loss": 1.0 / (epoch + 1)})
    view.update(records, epoch + 1)
view.finish(records, 3)
print("draws", view.draws)
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run top to bottom in a python3 kernel, in a temporary folder: (its cells
    with their outputs, that folder)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    folder = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(REDRAW_CELL.strip()))
    nb.cells[-1].id = "redraw"
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return nb.cells, folder


def code_cell(cells, cell_id: str):
    """The code cell of that id (the notebook names each step's cell)."""
    (cell,) = [c for c in cells if c.get("id") == cell_id and c.cell_type == "code"]
    return cell


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def pngs(cell) -> int:
    """Pictures in a cell's outputs: image/png outputs and PNGs inside its HTML."""
    return sum(
        ("image/png" in o.get("data", {})) + o.get("data", {}).get("text/html", "").count("<img")
        for o in cell.outputs
    )


def test_the_notebook_is_stored_clean_with_the_courses_six_sections():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if "outputs" in c)
    headings = [
        line.removeprefix("## ")
        for c in nb.cells
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
        if line.startswith("## ")
    ]
    assert headings == SECTIONS


def test_the_notebook_runs_to_the_courses_numbers(executed):
    cells, folder = executed
    errors = [
        o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    printed = text_of(code_cell(cells, "learned"))
    assert re.search(r"weights (\d\.\d{4}), bias (\d\.\d{4})", printed).groups() == (
        "0.5784",
        "0.3513",
    )
    assert "Loaded model predicts the same: True" in text_of(code_cell(cells, "load"))
    # Step 6: the run in one call gets the same numbers, and its result shows its report.
    run = code_cell(cells, "run")
    assert "torchwork.run(" in run.source
    report = next(o.data["text/html"] for o in run.outputs if "text/html" in o.get("data", {}))
    assert 'class="torchwork-run"' in report
    learned = re.findall(r'<td class="num learned">([\d.]+)</td>', report)
    assert learned == ["0.5784", "0.3513"]
    assert (folder / "runs" / "01_pytorch_workflow" / "summary.json").is_file()
    assert (folder / "models" / "01_pytorch_workflow_model_0.pth").is_file()


def test_the_notebook_runs_a_table_by_name_with_a_tables_defaults(executed):
    cells, folder = executed
    assert "torchwork.run(epochs=100," in code_cell(cells, "run").source  # the flags by name
    table = code_cell(cells, "table-run")
    assert 'torchwork.run(data="data/line.csv", target="y"' in table.source
    assert any("text/html" in o.get("data", {}) for o in table.outputs)  # its report
    summary = json.loads((folder / "runs" / "line_table" / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["converged"]  # a table's defaults
    learned = summary["coefficients"]["learned"]  # in the column's units: the true line
    assert (round(learned["weight"][0][0], 4), round(learned["bias"][0], 4)) == (0.7, 0.3)


def test_each_step_shows_its_picture(executed):
    cells, _ = executed
    # The data; before training; the training, drawn live; the predictions after it; the
    # loss curves beside the history's table; the run's report (loss curves, before, after).
    shown = {"data": 1, "predictions-before": 1, "train": 1, "predictions": 1, "history": 1}
    for cell_id, count in {**shown, "run": 3}.items():
        assert pngs(code_cell(cells, cell_id)) == count, cell_id
    model = code_cell(cells, "model").outputs[0].data["text/html"]
    assert ">0.3367</td>" in model and ">0.1288</td>" in model  # the course's starting values
    loaded = code_cell(cells, "load").outputs[-1].data["text/html"]
    assert ">0.5784</td>" in loaded and ">0.3513</td>" in loaded


def test_live_training_draws_one_picture_redrawn_in_place(executed):
    cells, _ = executed
    live = code_cell(cells, "train")
    assert "live=True" in live.source
    images = [o for o in live.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and images[0].output_type == "display_data"
    assert "Epoch: 90 | Train loss: 0.02789" in text_of(live)  # the course's log goes on
    redrawn = code_cell(cells, "redraw")
    assert "draws 3" in text_of(redrawn)
    assert pngs(redrawn) == 1


# --- Without a kernel -----------------------------------------------------------------------


def course_history(**kwargs) -> History:
    """The course's 100 epochs of model_0, logged every 10."""
    X, y = make_line()
    s = split(X, y)
    torch.manual_seed(42)
    model = LinearRegressionModel()
    optimizer = make_optimizer("sgd", model.parameters(), lr=0.01)
    loss_fn = make_loss("l1")
    data = (s.X_train, s.y_train, s.X_test, s.y_test)
    return fit(model, *data, loss_fn, optimizer, epochs=100, log=None, **kwargs)


def test_history_shows_its_table_and_loss_curves():
    history = course_history()
    html = history._repr_html_()
    assert "<table>" in html and html.count("<img") == 1 and "data:image/png;base64," in html
    assert '<td style="text-align: right">0.31288</td>' in html  # epoch 0, as the course logs
    assert "10 records of 100 epochs" in html and "rows left out" not in html
    long = History([{"epoch": e, "train_loss": 1 / (e + 1)} for e in range(100)], epochs_run=100)
    html = long._repr_html_()
    assert "60 rows left out" in html
    assert ">0</td>" in html and ">99</td>" in html and ">50</td>" not in html


def test_history_columns_are_plain_lists_row_for_row():
    history = History(
        [{"epoch": 0, "train_loss": 0.5}, {"epoch": 10, "train_loss": 0.25, "val_loss": 0.3}]
    )
    assert history.columns() == {
        "epoch": [0, 10],
        "train_loss": [0.5, 0.25],
        "val_loss": [None, 0.3],
    }


def test_history_to_pandas_round_trips_the_records():
    pytest.importorskip("pandas")
    history = course_history()
    frame = history.to_pandas()
    assert list(frame.columns) == ["epoch", "train_loss", "test_loss"]
    assert len(frame) == len(history.records) == 10
    assert frame.to_dict("records") == history.records
    assert frame["epoch"].tolist() == history.column("epoch")


def test_history_to_pandas_without_pandas_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError) as e:
        History([{"epoch": 0, "train_loss": 1.0}]).to_pandas()
    message = str(e.value)
    assert "\n" not in message
    assert "pip install pandas" in message and "History.columns()" in message


def test_models_show_what_they_are_and_small_ones_their_values():
    torch.manual_seed(42)
    html = LinearRegressionModel()._repr_html_()
    assert "<b>LinearRegressionModel</b>" in html and "the course&#x27;s model_0" in html
    assert "2 parameters" in html
    assert ">0.3367</td>" in html and ">0.1288</td>" in html  # as model_0.state_dict()
    assert "<pre>LinearRegressionModel()</pre>" in html
    mlp = MLP(3, [64, 64], 1)
    html = mlp._repr_html_()
    count = sum(p.numel() for p in mlp.parameters())
    assert f"{count:,} parameters" in html and "MLP (hidden layers 64, 64)" in html
    assert "<th>values</th>" not in html  # too many numbers to list
    assert "(0): Linear(in_features=3, out_features=64, bias=True)" in html
    for model in (
        build_model("linear", 3),
        build_model("linear", 3, 4, task="multiclass"),
        build_model("tinyvgg", 1, 3, [4], task="multiclass", image_size=8),
        build_model("cnn", 3, 2, [4], task="binary", image_size=8),
    ):
        html = model._repr_html_()
        assert f"<b>{type(model).__name__}</b>" in html and "<pre>" in html


def test_a_figure_shows_as_its_picture():
    X, y = make_line()
    s = split(X, y)
    png = plot_predictions(s.X_train, s.y_train, s.X_test, s.y_test)._repr_png_()
    assert png.startswith(PNG) and len(png) > 10_000


def test_a_run_result_is_a_path_that_shows_its_report(course_run):
    folder, _ = course_run
    result = RunFolderPath(folder)
    assert isinstance(result, Path) and result == folder and (result / "summary.json").is_file()
    html = result._repr_html_()
    assert html.startswith('<div class="torchwork-run">') and html.endswith("</div>")
    assert "<html" not in html and "<body" not in html
    # The metrics beside the closed-form answer, the learned line beside the true one.
    assert "<td>closed-form</td>" in html and ">0.056878</td>" in html
    assert re.findall(r'<td class="num learned">([\d.]+)</td>', html) == ["0.5784", "0.3513"]
    assert html.count("<img") == len(list((folder / "plots").glob("*.png"))) == 3
    # Its CSS restyles nothing outside it: every rule starts with the wrapper's class.
    css = html.split("<style>", 1)[1].split("</style>", 1)[0]
    selectors = [s for rule in re.findall(r"([^{}]+)\{", css) for s in rule.split(",")]
    assert selectors and all(s.strip().startswith(".torchwork-run") for s in selectors)
    # A path that is no run folder shows as text.
    assert RunFolderPath(folder / "plots")._repr_html_() is None


def test_run_result_type_is_public():
    assert torchwork.RunFolderPath is RunFolderPath and "RunFolderPath" in dir(torchwork)


def test_resume_returns_the_run_folder_as_run_does(course_run, tmp_path, capsys):
    folder = shutil.copytree(course_run[0], tmp_path / "course")
    lines = []
    result = torchwork.resume(folder, log=lines.append, live=True)
    assert type(result) is RunFolderPath and result == folder
    assert "Resuming" in "\n".join(lines)
    learned = re.findall(r'<td class="num learned">([\d.]+)</td>', result._repr_html_())
    assert learned == ["0.5784", "0.3513"]


def test_run_by_name_is_the_command_line_run(tw, tmp_path):
    """torchwork.run(data=..., target=..., ...) takes the flags of `torchwork run` by name,
    with its defaults (a table's) and checks: the same run, metric for metric."""
    import numpy as np

    from conftest import write_csv

    rng = np.random.default_rng(0)
    k = rng.integers(0, 3, 60)
    write_csv(
        tmp_path / "tiny.csv",
        {
            "a": k + rng.normal(size=60),
            "colour": np.where(k == 1, "red", "blue"),
            "species": np.array(["x", "y", "z"])[k],
        },
    )
    # one thread: an auto count follows the machine's load, which may change between runs
    flags = "--data tiny.csv --target species --model mlp --hidden 8 --epochs 5 --no-plots"
    flags += " --threads 1"
    assert tw("run", *flags.split(), "--out", "cli")[0] == 0
    folder = torchwork.run(
        data="tiny.csv",
        target="species",
        model="mlp",
        hidden=[8],
        epochs=5,
        no_plots=True,
        threads=1,
        out="api",
        log=lambda _: None,
    )
    assert type(folder) is RunFolderPath and folder.name == "api"
    cli, api = (
        json.loads((tmp_path / name / "summary.json").read_text()) for name in ("cli", "api")
    )
    for key in ("task", "loss", "metrics", "reference", "learned", "rows", "epochs_run"):
        assert api[key] == cli[key], key
    assert api["metrics"]["test"]["accuracy"] > 0
    config = (tmp_path / "cli" / "config.toml").read_text().replace('"cli"', '"api"')
    assert (folder / "config.toml").read_text() == config


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_live_view_redraws_only_after_twenty_times_a_redraws_cost():
    clock = FakeClock()
    shown = []

    def show(fig):
        clock.now += 0.5  # each redraw costs half a second
        shown.append(fig.axes[0].get_title())

    view = LiveLossCurves(100, clock=clock, show=show)
    records = []
    for epoch in range(100):
        clock.now += 0.1  # an epoch takes a tenth of a second
        if epoch % 10 == 0:
            records.append({"epoch": epoch, "train_loss": 1.0, "test_loss": 2.0})
            view.update(records, epoch + 1)
    # Before any redraw is measured, one is assumed to cost 0.15 s: the first waits for 3 s,
    # each next one for 20 x 0.5 s = 10 s; 100 epochs of 0.1 s leave room for one.
    assert view.draws == 1 and shown == ["Training and test loss curves (31 of 100 epochs)"]
    view.finish(records, 100)
    assert view.draws == 2 and shown[-1] == "Training and test loss curves (100 of 100 epochs)"
    view.finish(records, 100)  # the picture is complete: no redraw
    assert view.draws == 2


def test_live_view_draws_at_the_end_even_when_every_update_was_too_soon():
    clock = FakeClock()
    shown = []
    view = LiveLossCurves(5, clock=clock, show=shown.append)
    records = [{"epoch": e, "train_loss": 1.0} for e in range(5)]
    for epoch in range(5):
        view.update(records[: epoch + 1], epoch + 1)  # the clock stands still: too soon
    assert view.draws == 0 and not shown
    view.finish(records, 5)
    assert view.draws == 1
    epochs, losses = shown[0].axes[0].lines[0].get_data()
    assert list(epochs) == [0, 1, 2, 3, 4] and list(losses) == [1.0] * 5


def test_fit_live_in_a_notebook_draws_the_final_curves(monkeypatch):
    import torchwork.notebook

    shown = []
    monkeypatch.setattr(torchwork.notebook, "in_notebook", lambda: True)
    monkeypatch.setattr(torchwork.notebook, "_DisplayOutput", lambda: shown.append)
    history = course_history(live=True)
    assert history.records == course_history().records  # drawing changes nothing
    assert shown and shown[-1].axes[0].get_title().endswith("(100 of 100 epochs)")
    epochs, _ = shown[-1].axes[0].lines[0].get_data()
    assert list(epochs) == history.column("epoch")


def test_fit_live_outside_a_notebook_shows_the_progress_bar(capsys):
    assert not in_notebook()
    history = course_history(live=True)
    err = capsys.readouterr().err
    assert "Training" in err and "epoch" in err  # tqdm's bar, on stderr
    assert len(history.records) == 10


def test_in_notebook_only_in_a_kernel(monkeypatch):
    assert in_notebook() is False  # pytest: no IPython shell
    monkeypatch.setitem(sys.modules, "IPython", None)  # IPython not installed
    assert in_notebook() is False
    shell = SimpleNamespace()  # the terminal's IPython: a shell without a kernel
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    assert in_notebook() is False
    shell.kernel = object()
    assert in_notebook() is True


def test_importing_torchwork_imports_neither_ipython_nor_pandas(tmp_path):
    code = (
        "import sys, torchwork, torchwork.notebook, torchwork.engine, torchwork.models\n"
        "import torchwork.report.notebook\n"
        "print(sorted(m for m in ('IPython', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
