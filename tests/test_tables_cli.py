"""Your own data, end to end through the command line."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from conftest import assert_one_line_error, moons, regression_table, run_cli, write_csv


def summary(tmp_path, folder):
    return json.loads((tmp_path / folder / "summary.json").read_text())


def test_regression_table_reaches_the_closed_form_optimum_with_defaults(tw, tmp_path):
    write_csv(tmp_path / "reg.csv", regression_table(rows=10000, features=10))
    code, out, err = tw("run", "--data", "reg.csv", "--out", "reg", "--no-plots")
    assert code == 0, err
    s = summary(tmp_path, "reg")
    assert s["task"] == "regression"
    learned, optimum = s["metrics"]["test"]["r2"], s["reference"]["metrics"]["test"]["r2"]
    assert learned >= optimum * 0.995, (learned, optimum)
    assert "Task: regression" in out


def test_mlp_beats_linear_on_half_moons(tw, tmp_path):
    write_csv(tmp_path / "moons.csv", moons(rows=1000))
    accuracy = {}
    for kind in ("linear", "mlp"):
        code, _, err = tw(
            "run", "--data", "moons.csv", "--model", kind, "--out", kind, "--no-plots"
        )
        assert code == 0, err
        s = summary(tmp_path, kind)
        assert s["task"] == "binary" and set(s["metrics"]["test"]) == {
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
        }
        accuracy[kind] = s["metrics"]["test"]["accuracy"]
    assert accuracy["mlp"] >= 0.97 and accuracy["mlp"] - accuracy["linear"] >= 0.07, accuracy


def test_linearly_separable_binary_with_logistic_regression(tw, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(800, 3))
    label = np.where(X @ np.array([2.0, -1.0, 0.5]) + 0.3 > 0, "spam", "ham")
    write_csv(tmp_path / "sep.csv", {"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "kind": label})
    code, _, err = tw("run", "--data", "sep.csv", "--out", "sep")
    assert code == 0, err
    s = summary(tmp_path, "sep")
    assert s["labels"] == ["ham", "spam"]
    assert s["metrics"]["test"]["accuracy"] >= 0.98
    assert s["reference"]["method"].startswith("majority")
    assert (tmp_path / "sep" / "plots" / "confusion_matrix.png").exists()
    assert (tmp_path / "sep" / "plots" / "loss_curves.png").exists()


# species (conftest.py): a multiclass table with string labels and a text feature, trained once
# a session in a fresh process; the tests below read it and write their own files in tmp_path.


def test_multiclass_with_string_labels(species):
    folder, stdout = species
    s = json.loads((folder / "run" / "summary.json").read_text())
    assert s["task"] == "multiclass" and s["labels"] == ["setosa", "versicolor", "virginica"]
    assert s["loss"] == "CrossEntropyLoss"
    assert s["data"]["inputs"] == ["p", "q", "colour=blue", "colour=red"]
    # The numbers' weights, and each category's as one row of its embedding: 3 classes each
    learned = s["learned"]
    weights = len(learned["linear_layer.weight"]) + len(learned["blocks.1.weight"])
    assert weights == 3 * len(s["data"]["inputs"])
    assert s["metrics"]["test"]["accuracy"] > 0.9
    assert len(s["confusion_matrix"]["test"]) == 3
    assert "Columns: number p, q; category colour" in stdout
    # a validation split chooses a linear classifier's L2 penalty; L-BFGS is not stopped early
    config = (folder / "run" / "config.toml").read_text()
    assert "patience = 0" in config and 'l2_c = "' not in config  # a number: the C chosen
    predictions = pcsv.read_csv(folder / "run" / "predictions.csv")
    assert set(predictions.column("prediction").to_pylist()) <= {
        "setosa",
        "versicolor",
        "virginica",
    }


def test_predict_in_a_new_process_matches_the_run(species, tmp_path):
    folder, _ = species
    result = run_cli(
        "predict",
        "--model",
        "run/model.safetensors",
        "--data",
        "iris.csv",
        "--out",
        str(tmp_path / "new.csv"),
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    ours = pcsv.read_csv(tmp_path / "new.csv")
    theirs = pcsv.read_csv(folder / "run" / "predictions.csv")
    assert ours.column_names[:4] == ["p", "q", "colour", "species"]
    for name in (
        "prediction",
        "probability_setosa",
        "probability_versicolor",
        "probability_virginica",
    ):
        assert ours.column(name).to_pylist() == theirs.column(name).to_pylist(), name
    printed = run_cli(
        "predict", "--model", "run/model.safetensors", "--data", "iris.csv", cwd=folder
    )
    assert printed.stdout == (tmp_path / "new.csv").read_text()


def test_regression_predict_matches_the_run_with_scaling(tw, tmp_path):
    table = regression_table(rows=400, features=3)
    write_csv(tmp_path / "train.csv", table)
    assert tw("run", "--data", "train.csv", "--out", "r", "--no-plots", "--epochs", "50")[0] == 0
    result = run_cli(
        "predict", "--model", "r/model.safetensors", "--data", "train.csv", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    import io

    ours = pcsv.read_csv(io.BytesIO(result.stdout.encode()))
    theirs = pcsv.read_csv(tmp_path / "r" / "predictions.csv")
    assert ours.column("prediction").to_pylist() == theirs.column("prediction").to_pylist()
    # --x takes raw values and applies the stored scaling
    row = ",".join(str(table[f"f{i}"][0]) for i in range(3))
    code, out, _ = tw("predict", "--model", "r/model.safetensors", "--x", row)
    assert code == 0
    assert float(out.splitlines()[1].split(",")[-1]) == pytest.approx(
        ours.column("prediction")[0].as_py(), rel=1e-5
    )


def test_evaluate_prints_metrics_and_json(species, capsys, monkeypatch):
    from torchwork.cli import main

    folder, _ = species
    monkeypatch.chdir(folder)
    assert (
        main(["evaluate", "--model", "run/model.safetensors", "--data", "iris.csv", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "multiclass" and result["rows"] == 600
    assert result["metrics"]["accuracy"] > 0.9
    assert main(["evaluate", "--model", "run/model.safetensors", "--data", "iris.csv"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "Confusion matrix" in out and "versicolor" in out


def test_evaluate_checks_the_features_before_the_target(species, tw, tmp_path):
    # One pass over the columns in the model's order, the target last, as a run checks
    # them: every column with empty cells named in one line, in that order.
    folder, _ = species
    (tmp_path / "holes.csv").write_text("p,q,colour,species\n1.0,2.0,red,\n1.5,,blue,setosa\n")
    model = str(folder / "run" / "model.safetensors")
    assert_one_line_error(
        tw("evaluate", "--model", model, "--data", str(tmp_path / "holes.csv")),
        "has empty or NaN cells in 2 columns: 'q' in 1 row (row 2), 'species' in 1 row (row 1)",
        "fix or remove those rows",
    )


def test_predict_column_errors(species, tw, tmp_path):
    folder, _ = species
    write_csv(tmp_path / "renamed.csv", {"p": [1.0], "Q": [2.0], "colour": ["red"]})
    assert_one_line_error(
        tw(
            "predict",
            "--model",
            str(folder / "run" / "model.safetensors"),
            "--data",
            str(tmp_path / "renamed.csv"),
        ),
        "lacks the model's column(s) q",
        "other columns Q",
    )
    write_csv(tmp_path / "green.csv", {"p": [1.0], "q": [2.0], "colour": ["green"]})
    assert_one_line_error(
        tw(
            "predict",
            "--model",
            str(folder / "run" / "model.safetensors"),
            "--data",
            str(tmp_path / "green.csv"),
            "--out",
            str(tmp_path / "green-predictions.csv"),
        ),
        "category 'green' in row 1, which the model never saw",
    )
    assert not (tmp_path / "green-predictions.csv").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p["blocks"][0].update(std=[0.0, 1.0]),
            "tampered.safetensors: the stored preprocessing is malformed: number column 'p' has std 0.0",
        ),
        (
            lambda p: p.update(labels=["setosa", "versicolor"]),  # the model has 3 outputs
            "does not match the model's inputs or outputs",
        ),
    ],
)
def test_a_tampered_model_file_is_an_error_not_wrong_numbers(
    species, tw, tmp_path, change, message
):
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder, _ = species
    with safe_open(str(folder / "run" / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metadata = f.metadata()
    preprocess = json.loads(metadata["preprocess"])
    change(preprocess)
    tampered = str(tmp_path / "tampered.safetensors")
    save_file(tensors, tampered, {**metadata, "preprocess": json.dumps(preprocess)})
    predicted = tw("predict", "--model", tampered, "--data", str(folder / "iris.csv"))
    assert_one_line_error(predicted, message)


def _bad_tables(tmp_path):
    write_csv(
        tmp_path / "ok.csv",
        {
            "a": [float(i) for i in range(20)],
            "b": [float(i % 3) for i in range(20)],
            "y": [i * 0.5 for i in range(20)],
        },
    )
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("a,b,y\n")
    (tmp_path / "nan.csv").write_text("a,y\n1,\n2,\n3,\n4,\n5,\n")  # no target at all
    (tmp_path / "inf.csv").write_text("a,y\n1,2\ninf,3\n3,4\n4,5\n5,6\n")
    (tmp_path / "text.csv").write_text("a,y\n1,2\n2,3\nabc,4\n4,5\n5,6\n")
    (tmp_path / "const.csv").write_text("a,c,y\n1,7,2\n2,7,3\n3,7,4\n4,7,5\n5,7,6\n")
    (tmp_path / "few.csv").write_text("a,y\n1,2.5\n2,3.7\n3,1.1\n")
    (tmp_path / "words.csv").write_text("a,y\n1,x\n2,y\n3,z\n4,x\n5,y\n")
    (tmp_path / "data.json").write_text("{}")
    (tmp_path / "colours.csv").write_text("a,c,y\n1,red,2\n2,blue,3\n3,red,4\n4,blue,5\n5,red,6\n")


BAD_TABLES = [
    (("--data", "missing.csv"), "data file missing.csv does not exist"),
    (("--data", "data.json"), "cannot read data.json: use a .csv"),
    (("--data", "empty.csv"), "empty.csv is empty"),
    (("--data", "header.csv"), "header.csv has a header but no data rows"),
    (
        ("--data", "ok.csv", "--target", "z"),
        "target column 'z' is not in ok.csv; its columns are a, b, y",
    ),
    (("--data", "ok.csv", "--features", "a,zz"), "--features: column 'zz' not in ok.csv"),
    (("--data", "nan.csv"), "column 'y' of nan.csv is empty in every row"),
    (("--data", "inf.csv"), "column 'a' of inf.csv has an infinite value in row 2"),
    (("--data", "text.csv"), "column 'a' of text.csv has a non-numeric value 'abc' in row 3"),
    (
        ("--data", "const.csv", "--features", "c"),  # one constant among others is left out
        "every feature column of const.csv was left out (1 column(s) with the same value in every row",
    ),
    (("--data", "ok.csv", "--exclude", "a,zz"), "--exclude: column 'zz' not in ok.csv"),
    (("--data", "few.csv", "--train", "0.5"), "has 3 rows, too few for the split"),
    (("--data", "words.csv", "--task", "regression"), "holds text, which cannot be regressed"),
    (("--data", "words.csv", "--task", "binary"), "has 3 distinct values, not 2"),
    (("--data", "ok.csv", "--loss", "bce"), "--loss bce does not fit a regression task"),
    (("--data", "ok.csv", "--task", "sideways"), "invalid choice: 'sideways'"),
    (("--data", "colours.csv", "--categorical", "none"), "column 'c' of colours.csv holds text"),
]


@pytest.mark.parametrize(("args", "message"), BAD_TABLES, ids=[" ".join(a) for a, _ in BAD_TABLES])
def test_bad_tables_are_one_clear_line_and_leave_nothing(tw, tmp_path, args, message):
    _bad_tables(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        outcome = tw("run", *args, "--out", "never")
    except SystemExit as e:  # argparse's own one-line errors
        outcome = (e.code, "", "")
        assert e.code == 2
        return
    assert_one_line_error(outcome, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_dropna_drops_and_says_how_many(tw, tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    y = list(2 * a + 1)
    y[3] = None
    y[17] = None
    write_csv(tmp_path / "holes.csv", {"a": a, "y": y})
    code, out, err = tw(
        "run", "--data", "holes.csv", "--dropna", "--out", "d", "--no-plots", "--epochs", "20"
    )
    assert code == 0, err
    assert "dropped 2 of 50 rows" in out
    assert summary(tmp_path, "d")["rows"] == {"train": 38, "test": 10}


def test_a_table_run_imports_only_what_it_uses(tmp_path):
    """No matplotlib with --no-plots, no torch.compile machinery for L-BFGS, and no pandas
    (which pyarrow imports, where it is installed, for its own conversions)."""
    import subprocess
    import sys

    import pyarrow as pa

    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    pcsv.write_csv(
        pa.table(
            {
                "a": rng.normal(size=300),
                "c": np.array(list("xyz"))[rng.integers(0, 3, 300)],
                "y": rng.normal(size=300),
            }
        ),
        path,
    )
    code = (
        "import sys\n"
        "from torchwork.cli import main\n"
        f"main(['run', '--data', {str(path)!r}, '--out', {str(tmp_path / 'run')!r}, '--no-plots'])\n"
        "print(sorted(m for m in ('pandas', 'matplotlib', 'torch._dynamo', 'pyarrow.compute') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_table_run_says_and_records_the_solver_it_chose(tw, tmp_path):
    write_csv(tmp_path / "reg.csv", regression_table(rows=3000, features=6))
    code, out, err = tw("run", "--data", "reg.csv", "--out", "run", "--no-plots")
    assert code == 0, err
    assert "Chosen for this data: optimizer lbfgs (a linear model" in out
    assert "(--optimizer, --batch-size, --lr to change)" in out
    assert "3. Training for up to 500 epochs (full batch; converged when" in out
    s = summary(tmp_path, "run")
    training = s["training"]
    assert (training["optimizer"], training["lr"], training["batch_size"]) == ("lbfgs", 1.0, 0)
    assert set(training["chosen"]) == {"optimizer", "lr", "batch_size"}
    assert s["converged"] and not s["stopped_early"] and s["epochs_run"] < 100
    assert f"Converged at epoch {s['epochs_run'] - 1}:" in out
    config = (tmp_path / "run" / "config.toml").read_text()
    assert 'optimizer = "lbfgs"' in config and "lr = 1.0" in config and "batch_size = 0" in config
    # The recorded config repeats the run exactly.
    code, _, err = tw("run", "--config", "run/config.toml", "--out", "again", "--no-plots")
    assert code == 0, err
    assert (tmp_path / "run" / "metrics.csv").read_text() == (
        tmp_path / "again" / "metrics.csv"
    ).read_text()
    assert summary(tmp_path, "again")["metrics"] == s["metrics"]


def test_epochs_given_on_a_table_are_honoured_exactly(tw, tmp_path):
    write_csv(tmp_path / "reg.csv", regression_table(rows=1000, features=3))
    code, out, err = tw("run", "--data", "reg.csv", "--out", "run", "--no-plots", "--epochs", "60")
    assert code == 0, err
    s = summary(tmp_path, "run")
    assert s["epochs_run"] == 60 and not s["converged"] and "Converged" not in out
    assert "3. Training for 60 epochs (full batch)" in out


def test_an_mlp_on_many_rows_trains_on_minibatches_and_stops_on_validation(tw, tmp_path):
    write_csv(tmp_path / "moons.csv", moons(rows=12_000))
    code, _, err = tw("run", "--data", "moons.csv", "--model", "mlp", "--out", "m", "--no-plots")
    assert code == 0, err
    s = summary(tmp_path, "m")
    # 8400 training rows: the largest power of two that leaves 32 steps an epoch
    assert s["training"]["batch_size"] == 256 and s["training"]["optimizer"] == "adam"
    assert s["rows"] == {"train": 8400, "val": 1200, "test": 2400}
    assert s["metrics"]["test"]["accuracy"] >= 0.99
    assert s["epochs_run"] < 500


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tol", "-1"), "--tol must be 0 (off)"),
        (("--tol-epochs", "0"), "--tol-epochs must be at least 1"),
        (
            ("--optimizer", "lbfgs", "--batch-size", "32"),
            "--optimizer lbfgs trains on the full batch",
        ),
        (("--lr", "fast"), "argument --lr: expected a number or auto, got 'fast'"),
        (("--batch-size", "big"), "argument --batch-size: expected a whole number or auto"),
    ],
)
def test_bad_solver_flags_are_one_clear_line(tw, tmp_path, capsys, args, message):
    write_csv(tmp_path / "reg.csv", regression_table(rows=100, features=2))
    try:
        outcome = tw("run", "--data", "reg.csv", "--out", "run", *args)
    except SystemExit as e:  # argparse's own one-line errors
        outcome = (e.code, "", capsys.readouterr().err)
    assert_one_line_error(outcome, message)
    assert not (tmp_path / "run").exists()


def test_predict_writes_the_input_rows_as_they_were_written(tw, tmp_path):
    """True stays True, 0.50 stays 0.50, and only a value that needs quotes is quoted."""
    lines = ["flag,x,note,y"] + [
        f'{"True" if i % 2 else "False"},{i / 4:.2f},"n{i % 3}, more",{i + 3 * (i % 2)}'
        for i in range(30)
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    code, _, err = tw("run", "--data", "t.csv", "--out", "r", "--no-plots")
    assert code == 0, err
    code, out, err = tw("predict", "--model", "r/model.safetensors", "--data", "t.csv")
    assert code == 0, err
    assert [line.rsplit(",", 1)[0] for line in out.splitlines()] == lines
    code, _, err = tw("predict", "--model", "r/model.safetensors", "--data", "t.csv", "--out",
                      "p.csv")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "p.csv").read_text() == out
    code, _, err = tw("predict", "--model", "r/model.safetensors", "--data", "t.csv", "--out",
                      "p.parquet")  # fmt: skip
    assert code == 0, err
    assert pq.read_table(tmp_path / "p.parquet").column("flag").type == pa.bool_()  # typed
