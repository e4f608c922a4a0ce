"""torchwork eject: a run as one plain PyTorch script that, run where torchwork cannot be
imported, writes a state_dict equal to the run's model and the run's own metrics.csv."""

import ast
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_one_line_error, small_tables, write_csv
from torchwork.cli import main

TEXT_MINIBATCHES = (
    "--target b --task regression --shuffle --batch-size 16 --train 0.6 --val 0.2 "
    "--patience 3 --tol 0.001 --optimizer sgd --momentum 0.9 --schedule cosine --epochs 60"
)
# The runs ejected, by name: (the data file it reads, from small_tables or made here; flags)
RUNS = {
    "course": (None, []),  # the course's default run: model_0, SGD, L1, 300 epochs
    "linear": (None, ["--model", "linear", "--epochs", "50"]),
    # a table regression with a text column, scaled, on shuffled minibatches with momentum
    # and a cosine schedule, stopped early on its validation rows (or at convergence)
    "text_minibatches": ("binary.csv", TEXT_MINIBATCHES.split()),
    "binary": ("binary.csv", []),  # every default: L-BFGS, convergence at tol
    "mlp": ("multiclass.csv", ["--model", "mlp", "--hidden", "8", "--epochs", "30"]),  # Adam
    # 4,800 training rows: the full batch is trained stored column by column
    "by_column": ("wide.parquet", ["--optimizer", "adam", "--lr", "0.05", "--epochs", "20"]),
    # settings fitted after training, which the script names; its table is moved (MOVED)
    "calibrated": (
        "gone/binary.csv",
        ["--calibrate", "--threshold", "auto", "--train", "0.6", "--val", "0.2"],
    ),
    "interval": ("regression.csv", ["--interval", "0.8", "--train", "0.6", "--val", "0.2"]),
}
# Runs whose table is moved once ejected, and the --data their script is run with (from its
# folder out-NAME)
MOVED = {"calibrated": ("gone/binary.csv", "moved/binary.csv")}
ALLOWED_IMPORTS = {"argparse", "csv", "hashlib", "math", "numpy", "pyarrow", "torch"}


def write_wide(path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=6000), rng.normal(size=6000) * 5 + 2, rng.integers(0, 100, 6000)
    pq.write_table(pa.table({"a": a, "b": b, "c": c, "y": 2 * a - b + 0.1 * c}), path)


@pytest.fixture(scope="module")
def ejected(tmp_path_factory):
    """Each of RUNS run in this process and ejected to NAME.py, then every script run at
    once, each in its own folder, in a fresh process where `import torchwork` fails; the
    tables of MOVED are moved first, and their scripts given --data.

    Returns {"folder": ..., NAME: the script's finished process, "said": {NAME: what eject
    wrote on stderr}}."""
    folder = tmp_path_factory.mktemp("eject")
    blocker = folder / "blocked" / "torchwork"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("the script imported torchwork")\n')
    for name, columns in small_tables(rows=300).items():
        write_csv(folder / f"{name}.csv", columns)
    write_wide(folder / "wide.parquet")
    for was, _ in MOVED.values():
        (folder / was).parent.mkdir(exist_ok=True)
        shutil.copy(folder / Path(was).name, folder / was)
    said = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for name, (data, flags) in RUNS.items():
            source = ["--data", data] if data else []
            assert main(["run", *source, *flags, "--out", name, "--no-plots"]) == 0
            with contextlib.redirect_stderr(io.StringIO()) as err:
                assert main(["eject", name, "--out", f"{name}.py"]) == 0
            said[name] = err.getvalue()
    for was, now in MOVED.values():
        (folder / now).parent.mkdir(exist_ok=True)
        (folder / was).rename(folder / now)
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    started = {}
    for name in RUNS:
        (folder / f"out-{name}").mkdir()
        moved = ["--data", str(Path("..", MOVED[name][1]))] if name in MOVED else []
        started[name] = subprocess.Popen(
            [sys.executable, "-W", "error::UserWarning", str(folder / f"{name}.py"), *moved],
            cwd=folder / f"out-{name}",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finished = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=300)
        finished[name] = (process.returncode, out, err)
    return {"folder": folder, "said": said, **finished}


@pytest.mark.parametrize("name", list(RUNS))
def test_script_reproduces_the_run_bit_for_bit(ejected, name):
    folder = ejected["folder"]
    code, out, err = ejected[name]
    assert code == 0, err
    written = folder / f"out-{name}"
    assert (written / "metrics.csv").read_bytes() == (folder / name / "metrics.csv").read_bytes()
    state = torch.load(written / "model.pth", weights_only=True)
    run = load_file(folder / name / "model.safetensors")
    assert state.keys() == run.keys()
    for key, tensor in run.items():
        assert torch.equal(state[key], tensor), key
    assert "Loaded model predicts identically: True" in out


def test_script_prints_the_run_s_own_test_metric(ejected):
    summary = json.loads((ejected["folder"] / "course" / "summary.json").read_text())
    mae = summary["metrics"]["test"]["mae"]
    assert f"Test MAE: {mae:.6g} (the run: {mae:.6g})" in ejected["course"][1]


def test_scripts_train_on_the_run_s_threads(ejected):
    """The thread count can round a model apart: the script sets the run's, from its config,
    as the run chose it (and wrote it in config.toml)."""
    for name in RUNS:
        threads = tomllib.loads((ejected["folder"] / name / "config.toml").read_text())["train"][
            "threads"
        ]
        assert threads >= 1
        script = (ejected["folder"] / f"{name}.py").read_text()
        assert f"torch.set_num_threads({threads})  # the run's" in script, name


def test_scripts_read_like_the_course_and_import_no_torchwork(ejected):
    folder = ejected["folder"]
    for name in RUNS:
        text = (folder / f"{name}.py").read_text()
        imported = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module.split(".")[0])
        assert imported <= ALLOWED_IMPORTS, (name, imported)
        sections = [f"# {n}. " for n in range(1, 7)]
        positions = [text.index(s) for s in sections]
        assert positions == sorted(positions), name
        for word in ("X_train", "y_test", "loss_fn", "epochs", "optimizer.zero_grad()"):
            assert word in text, (name, word)
    course = (folder / "course.py").read_text()
    assert "model_0 = LinearRegressionModel()" in course
    assert "X_train, y_train = X[:train_split], y[:train_split]" in course
    assert "X_train_by_column" in (folder / "by_column.py").read_text()
    assert "pa_csv.read_csv" in (folder / "binary.py").read_text()


def test_scripts_pass_ruff_check(ejected):
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this Python")
    config = Path(__file__).resolve().parents[1] / "pyproject.toml"
    scripts = [str(ejected["folder"] / f"{name}.py") for name in RUNS]
    result = subprocess.run(
        [str(ruff), "check", "--no-cache", "--config", str(config), *scripts],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def _copy(ejected, name: str, tmp_path: Path) -> Path:
    copy = tmp_path / name
    shutil.copytree(ejected["folder"] / name, copy)
    return copy


def test_a_run_of_several_processes_is_refused_by_name(ejected, tmp_path, tw):
    run = _copy(ejected, "course", tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary["reproducibility"]["processes"] = 2
    (run / "summary.json").write_text(json.dumps(summary))
    assert_one_line_error(tw("eject", str(run), "--out", "t.py"), "2 processes (--nproc)")
    assert not (tmp_path / "t.py").exists()


def test_class_weights_are_refused_by_name(ejected, tmp_path, tw):
    run = _copy(ejected, "binary", tmp_path)
    config = (run / "config.toml").read_text()
    (run / "config.toml").write_text(
        config.replace('class_weight = ""', 'class_weight = "balanced"')
    )
    assert_one_line_error(tw("eject", str(run), "--out", "t.py"), "--class-weight balanced")


def test_a_changed_data_file_is_refused(ejected, tmp_path, tw):
    run = _copy(ejected, "binary", tmp_path)
    (tmp_path / "binary.csv").write_text("a,b,color,label\n1,2,red,yes\n")
    assert_one_line_error(tw("eject", str(run)), "binary.csv changed since the run")


def test_not_a_run_folder_incomplete_or_newer_is_one_line(ejected, tmp_path, tw):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(tw("eject", "empty"), "not a finished run folder")
    assert_one_line_error(tw("eject", "nowhere"), "does not exist")
    run = _copy(ejected, "course", tmp_path)
    (run / "model.safetensors").unlink()
    assert_one_line_error(tw("eject", str(run)), "no model.safetensors")

    from safetensors import safe_open
    from safetensors.torch import save_file

    newer = _copy(ejected, "linear", tmp_path)
    with safe_open(str(newer / "model.safetensors"), framework="pt") as f:
        metadata = {**f.metadata(), "format_version": "99"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(newer / "model.safetensors"), metadata=metadata)
    assert_one_line_error(tw("eject", str(newer)), "newer than this torchwork reads")
    assert not (tmp_path / "train.py").exists()


def test_out_is_refused_over_a_file_without_force(ejected, tmp_path, tw):
    run = _copy(ejected, "course", tmp_path)
    (tmp_path / "train.py").write_text("# mine\n")
    assert_one_line_error(tw("eject", str(run)), "already exists", "--force")
    assert (tmp_path / "train.py").read_text() == "# mine\n"
    assert_one_line_error(tw("eject", str(run), "--out", "train.txt"), ".py name")
    code, out, _ = tw("eject", str(run), "--force")
    assert code == 0 and "Wrote train.py" in out
    assert "`python train.py` trains the same model again" in (tmp_path / "train.py").read_text()


def test_a_schedule_resumed_with_other_epochs_is_refused(tmp_path, tw):
    # The cosine schedule spans --epochs: resumed with more, the later epochs' learning rates
    # differ from any single run's, which a script of one run cannot reproduce.
    flags = ["--model", "linear", "--schedule", "cosine", "--no-plots"]
    assert tw("run", *flags, "--epochs", "20", "--out", "run")[0] == 0
    assert tw("run", "--resume", "run", "--epochs", "30")[0] == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["training"]["resumed"] == [
        {"epochs_done": 20, "epochs_before": 20, "epochs": 30}
    ]
    assert_one_line_error(
        tw("eject", "run", "--out", "t.py"), "--epochs changed from 20 to 30", "cosine"
    )
    assert not (tmp_path / "t.py").exists()


def test_out_in_folders_not_yet_made_makes_them(ejected, tmp_path, tw):
    run = _copy(ejected, "course", tmp_path)
    code, out, err = tw("eject", str(run), "--out", "new/dir/train.py")
    assert code == 0, err
    assert "Wrote new/dir/train.py" in out
    # written in one step: no temporary file is left beside it
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == ["train.py"]
    (tmp_path / "a-file").write_text("")
    assert_one_line_error(
        tw("eject", str(run), "--out", "a-file/train.py"), "cannot make its folder a-file"
    )


def test_a_moved_table_is_one_line_naming_data(ejected):
    # The run's table has moved (MOVED): with --data the script reproduces the run (above);
    # without, it says where it looked and how to give the new place.
    folder = ejected["folder"]
    (folder / "out-missing").mkdir()
    result = subprocess.run(
        [sys.executable, str(folder / "calibrated.py")],
        cwd=folder / "out-missing",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(folder / "gone" / "binary.csv") in lines[0]
    assert "python calibrated.py --data NEW/PATH.csv" in lines[0]
    assert not list((folder / "out-missing").iterdir())


def test_the_script_names_the_settings_it_leaves_out(ejected):
    folder, said = ejected["folder"], ejected["said"]
    summary = json.loads((folder / "calibrated" / "summary.json").read_text())
    temperature = summary["calibration"]["temperature"]
    threshold = summary["threshold"]["value"]
    line = said["calibrated"].strip()
    assert line.startswith("The script leaves out: --calibrate (temperature scaling"), line
    assert f"the run's temperature, {temperature:.6g}" in line
    assert "--threshold auto (the probability of the best validation f1" in line
    assert f"at the run's, {threshold:g}" in line
    assert line.endswith("its predictions are the model's before them."), line
    assert "--interval 0.8 (split-conformal prediction intervals" in said["interval"]
    for name in ("calibrated", "interval"):
        docstring = ast.get_docstring(ast.parse((folder / f"{name}.py").read_text()))
        assert "The script leaves out:" in docstring
        flags = [
            flag
            for flag in ("--calibrate", "--threshold auto", "--interval 0.8")
            if flag in said[name]
        ]
        assert flags
        for flag in flags:
            assert f"- {flag}: " in docstring, (name, flag)
    for name in RUNS.keys() - {"calibrated", "interval"}:
        assert said[name] == "", name
        assert "leaves out" not in (folder / f"{name}.py").read_text(), name


def test_folds_and_a_fixed_threshold_are_named(ejected, tmp_path, tw):
    run = _copy(ejected, "binary", tmp_path)
    shutil.copy(ejected["folder"] / "binary.csv", tmp_path / "binary.csv")
    config = (run / "config.toml").read_text()
    assert "\nthreshold = 0.5\n" in config and "\nfolds = 0\n" in config
    config = config.replace("\nthreshold = 0.5\n", "\nthreshold = 0.3\n")
    (run / "config.toml").write_text(config.replace("\nfolds = 0\n", "\nfolds = 3\n"))
    code, _, err = tw("eject", str(run), "--out", "t.py")
    assert code == 0, err
    assert err.startswith("The script leaves out: --folds 3 (the cross-validation fits"), err
    assert "; --threshold 0.3 (" in err
    assert "- --folds 3: " in (tmp_path / "t.py").read_text()
