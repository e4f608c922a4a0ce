"""The command line end to end, in a temporary folder, as a user types it."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import assert_clean_error

# course_run (conftest.py): `torchwork run --epochs 100` in a fresh process, made once a session.


def test_run_epochs_100_reproduces_the_course(course_run):
    folder, stdout = course_run
    assert "Initial parameters: weights 0.3367, bias 0.1288" in stdout
    assert "Epoch: 0 | Train loss: 0.31288 | Test loss: 0.48107" in stdout
    summary = json.loads((folder / "summary.json").read_text())
    assert round(summary["learned"]["weights"][0], 4) == 0.5784
    assert round(summary["learned"]["bias"][0], 4) == 0.3513
    lines = {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line.strip()}
    assert lines["weight"][0] == "0.5784" and lines["bias"][0] == "0.3513"  # learned column
    first = (folder / "metrics.csv").read_text().splitlines()[1].split(",")
    assert (
        first[0] == "0"
        and round(float(first[1]), 4) == 0.3129
        and round(float(first[2]), 4) == 0.4811
    )


def test_run_folder_contents(course_run):
    folder, stdout = course_run
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*")}
    assert {
        "config.toml",
        "metrics.csv",
        "summary.json",
        "model.safetensors",
        "model.pth",
        "plots",
        "plots/predictions_before.png",
        "plots/predictions_after.png",
        "plots/loss_curves.png",
    } <= names
    for png in folder.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["metrics"]) == {"train", "test"}
    assert set(summary["metrics"]["test"]) == {"mae", "mse", "rmse", "r2"}
    assert set(summary["reference"]["metrics"]["test"]) == {"mae", "mse", "rmse", "r2"}
    assert summary["reference"]["weight"][0] == pytest.approx(0.7, abs=1e-6)
    assert summary["true"] == {"weight": 0.7, "bias": 0.3}
    assert summary["seconds"] > 0
    assert summary["versions"]["torchwork"] and summary["versions"]["torch"]
    assert "identical to the trained model's" in stdout
    assert len((folder / "metrics.csv").read_text().splitlines()) == 11


def test_predict_and_inspect_use_the_saved_model(course_run, cli):
    folder, _ = course_run
    summary = json.loads((folder / "summary.json").read_text())
    w, b = summary["learned"]["weights"][0], summary["learned"]["bias"][0]
    for name in ("model.safetensors", "model.pth"):
        result = cli("predict", "--model", str(folder / name), "--x", "0.5", "0.9")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert lines[0] == "x,prediction"
        assert float(lines[1].split(",")[1]) == pytest.approx(w * 0.5 + b, abs=1e-6)
        assert float(lines[2].split(",")[1]) == pytest.approx(w * 0.9 + b, abs=1e-6)
    shown = cli("inspect", str(folder / "model.safetensors"))
    assert shown.returncode == 0, shown.stderr
    assert "LinearRegressionModel" in shown.stdout and "weights" in shown.stdout
    assert "epochs = 100" in shown.stdout


def test_predict_from_files(course_run, cli, tmp_path):
    import numpy as np

    folder, _ = course_run
    (tmp_path / "x.csv").write_text("x\n0.5\n0.9\n")
    np.save(tmp_path / "x.npy", np.array([[0.5], [0.9]], dtype="float32"))
    a = cli("predict", "--model", str(folder / "model.safetensors"), "--input", "x.csv")
    b = cli("predict", "--model", str(folder / "model.safetensors"), "--input", "x.npy")
    c = cli("predict", "--model", str(folder / "model.safetensors"), "--x", "0.5", "0.9")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout == c.stdout


def test_default_run_learns_the_line(cli, tmp_path):
    result = cli("run", "--out", "default", "--no-plots")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["learned"]["weights"][0] == pytest.approx(0.7, abs=0.01)
    assert summary["learned"]["bias"][0] == pytest.approx(0.3, abs=0.01)
    assert not (tmp_path / "default" / "plots").exists()


def test_same_config_and_seed_write_identical_metrics(cli, tmp_path):
    args = (
        "--epochs",
        "60",
        "--model",
        "mlp",
        "--hidden",
        "16",
        "--noise",
        "0.05",
        "--shuffle",
        "--batch-size",
        "8",
        "--val",
        "0.1",
        "--train",
        "0.7",
        "--no-plots",
    )
    assert cli("run", "--out", "a", *args).returncode == 0
    assert cli("run", "--out", "b", *args).returncode == 0
    a = (tmp_path / "a" / "metrics.csv").read_text()
    assert a == (tmp_path / "b" / "metrics.csv").read_text()
    assert a.splitlines()[0] == "epoch,train_loss,val_loss,test_loss"
    from safetensors.torch import load_file

    first, second = (load_file(tmp_path / name / "model.safetensors") for name in ("a", "b"))
    assert first.keys() == second.keys()
    assert all(first[k].equal(second[k]) for k in first)


def test_config_file_and_flags(cli, tmp_path):
    printed = cli("run", "--epochs", "7", "--lr", "0.1", "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert "epochs = 7" in printed.stdout and "lr = 0.1" in printed.stdout
    (tmp_path / "run.toml").write_text(printed.stdout)
    again = cli("run", "--config", "run.toml", "--lr", "0.2", "--print-config")
    assert "epochs = 7" in again.stdout and "lr = 0.2" in again.stdout
    result = cli("run", "--config", "run.toml", "--out", "from-file", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "from-file" / "metrics.csv").read_text().splitlines()) == 2
    assert not (tmp_path / "runs").exists()
    default_folder = cli("run", "--epochs", "1", "--no-plots")
    assert default_folder.returncode == 0
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_early_stopping_from_the_cli(cli, tmp_path):
    result = cli(
        "run",
        "--out",
        "es",
        "--noise",
        "0.3",
        "--shuffle",
        "--train",
        "0.6",
        "--val",
        "0.2",
        "--model",
        "mlp",
        "--optimizer",
        "adam",
        "--lr",
        "0.05",
        "--epochs",
        "2000",
        "--patience",
        "10",
        "--no-plots",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "es" / "summary.json").read_text())
    assert summary["stopped_early"] and summary["epochs_run"] < 2000
    assert "Early stopping at epoch" in result.stdout
    assert set(summary["metrics"]) == {"train", "val", "test"}


BAD_INPUTS = [
    (("--step", "0"), "--step must be greater than 0"),
    (("--step", "-0.5"), "--step must be greater than 0"),
    (("--start", "1", "--end", "0.5"), "--start (1.0) must be less than --end"),
    (("--epochs", "0"), "--epochs must be at least 1"),
    (("--lr", "0"), "--lr must be greater than 0"),
    (("--lr", "-0.1"), "--lr must be greater than 0"),
    (("--loss", "hinge"), "invalid choice: 'hinge'"),
    (("--model", "resnet"), "invalid choice: 'resnet'"),
    (("--train", "0.9", "--test", "0.2"), "add up to 1.1, more than 1"),
    (("--val", "0.1"), "add up to 1.1, more than 1"),
    (("--epochs", "ten"), "invalid int value: 'ten'"),
    (("--hidden", "a,b"), "expected sizes such as 64,64"),
    (("--unknown-flag", "3"), "unrecognized arguments: --unknown-flag"),
    (("--patience", "3"), "needs a validation split"),
    (("--config", "missing.toml"), "config file missing.toml does not exist"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(cli, tmp_path, args, message):
    result = cli("run", *args, "--out", "never")
    assert_clean_error(result, message)
    assert not (tmp_path / "never").exists() and not (tmp_path / "runs").exists()


def test_unknown_toml_key_is_one_clear_line(cli, tmp_path):
    (tmp_path / "bad.toml").write_text("[train]\nepochs = 5\nlearning_rate = 0.1\n")
    result = cli("run", "--config", "bad.toml", "--out", "never")
    assert_clean_error(result, "unknown key 'learning_rate' in [train] of bad.toml")
    assert not (tmp_path / "never").exists()


def test_existing_folder_is_never_overwritten_without_force(cli, tmp_path):
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "summary.json").write_text("earlier results")
    result = cli("run", "--out", "earlier", "--epochs", "3")
    assert_clean_error(result, "already exists and is not empty", "--force")
    assert [p.name for p in folder.iterdir()] == ["summary.json"]
    assert (folder / "summary.json").read_text() == "earlier results"
    forced = cli("run", "--out", "earlier", "--epochs", "3", "--force", "--no-plots")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((folder / "summary.json").read_text())["metrics"]


def test_predict_errors_are_one_clear_line(course_run, cli, tmp_path):
    folder, _ = course_run
    assert_clean_error(cli("predict", "--model", "nope.safetensors", "--x", "1"), "does not exist")
    assert_clean_error(
        cli("predict", "--model", str(folder / "model.pth"), "--x", "abc"), "is not a number"
    )
    assert_clean_error(
        cli("predict", "--model", str(folder / "model.pth"), "--x", "1,2"), "takes 1 feature"
    )
    (tmp_path / "words.csv").write_text("x\nabc\ndef\n")
    assert_clean_error(
        cli("predict", "--model", str(folder / "model.pth"), "--data", "words.csv"),
        "column 'x' of words.csv is not numeric (string): give numbers only",
    )
    (tmp_path / "junk.safetensors").write_bytes(b"not a model at all")
    assert_clean_error(cli("inspect", "junk.safetensors"), "corrupt or truncated")
    assert_clean_error(cli("predict", "--model", str(folder / "model.pth")), "one of the arguments")


def test_help_is_fast_and_does_not_import_torch(tmp_path):
    code = "import sys; from torchwork.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.stdout.strip().endswith("False"), result.stdout
    code = "import sys, torchwork; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.stdout.strip() == "False"


def test_python_dash_m_and_version(cli):
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("torchwork ")
    assert cli().returncode == 2


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "torchwork")
    if not os.path.exists(script):
        pytest.skip("torchwork is not installed as a console script in this environment")
    started = time.perf_counter()
    result = subprocess.run([script, "run", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--epochs" in result.stdout
    assert time.perf_counter() - started < 60  # a sanity bound, not a benchmark


def test_export_compare_and_report_from_the_command_line(cli, tmp_path):
    for lr in ("0.01", "0.05", "0.1"):
        result = cli("run", "--epochs", "30", "--lr", lr, "--out", f"lr{lr}")
        assert result.returncode == 0, result.stderr
        assert "report.html" in result.stdout
        assert (tmp_path / f"lr{lr}" / "report.html").read_text().startswith("<!DOCTYPE html>")
    compared = cli(
        "compare", "lr0.01", "lr0.05", "lr0.1", "--out", "compare.png", "--html", "compare.html"
    )
    assert compared.returncode == 0, compared.stderr
    assert (
        "train.lr" in compared.stdout
        and "0.05" in compared.stdout
        and "train.epochs" not in compared.stdout
    )
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert_clean_error(cli("compare", "lr0.01"), "two")
    exported = cli("export", "--model", "lr0.1/model.safetensors", "--format", "pt2")
    assert exported.returncode == 0, exported.stderr
    assert "within 1e-05" in exported.stdout and (tmp_path / "lr0.1" / "model.pt2").exists()
    assert_clean_error(
        cli("export", "--model", "nope.safetensors", "--format", "pt2"), "does not exist"
    )


def test_tensorboard_logs_the_losses_or_says_what_to_install(tw, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code, _, err = tw("run", "--epochs", "5", "--tensorboard", "--out", "tb", "--no-plots")
    assert code == 2 and "pip install 'torchwork[tensorboard]'" in err
    assert not (tmp_path / "tb").exists()
    monkeypatch.setattr(builtins, "__import__", real_import)
    pytest.importorskip("tensorboard")
    code, _, err = tw("run", "--epochs", "25", "--tensorboard", "--out", "tb", "--no-plots")
    assert code == 0, err
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_review_regressions(tw, tmp_path, capsys):
    """Mistakes found in review, each now one clear line."""
    from conftest import assert_one_line_error, write_csv

    try:
        code = tw("run", "--npro", "2", "--epochs", "1")[0]
    except SystemExit as e:  # abbreviations are not flags: they would reach child runs
        code = e.code
    assert code == 2 and "unrecognized arguments: --npro" in capsys.readouterr().err
    assert_one_line_error(tw("run", "--nproc", "2", "--lr", "-1"), "--lr must be greater than 0")
    assert_one_line_error(tw("run", "--nproc", "2", "--batch-size", "1"), "smaller than --nproc 2")
    assert tw("run", "--epochs", "5", "--out", "line", "--no-plots")[0] == 0
    assert_one_line_error(tw("predict", "--model", "line/model.pth", "--x", "nan"), "NaN")
    assert_one_line_error(tw("predict", "--model", "line/model.pth", "--x", "1e39"), "too large")
    code, _, _ = tw("predict", "--model", "line/model.pth", "--x", "0.5", "--out", "p.csv")
    assert code == 0 and (tmp_path / "p.csv").read_text().startswith("x,prediction\n0.5,")
    assert_one_line_error(
        tw("predict", "--model", "line/model.pth", "--x", "1", "--out", "p.xlsx"),
        ".csv or .parquet",
    )
    # a target called "prediction", rows in no split, a .pth beside a table model
    write_csv(
        tmp_path / "t.csv",
        {"a": [float(i) for i in range(30)], "prediction": [i * 0.3 + 1 for i in range(30)]},
    )
    assert (
        tw(
            "run",
            "--data",
            "t.csv",
            "--train",
            "0.5",
            "--test",
            "0.2",
            "--epochs",
            "5",
            "--out",
            "t",
            "--no-plots",
        )[0]
        == 0
    )
    import pyarrow.csv as pcsv

    written = pcsv.read_csv(tmp_path / "t" / "predictions.csv")
    assert written.column_names[:3] == ["split", "prediction (actual)", "prediction"]
    assert written.column("split").to_pylist().count("unused") == 30 - 15 - 6
    assert_one_line_error(
        tw("evaluate", "--model", "t/model.pth", "--data", "t.csv"), "use that file"
    )
    (tmp_path / "u.csv").write_text("a,y\n1_0,2.5\n2,3.5\n3,4.5\n")
    assert_one_line_error(tw("run", "--data", "u.csv", "--out", "u"), "non-numeric value '1_0'")


def test_config_text_with_control_characters_round_trips(tw):
    from torchwork import RunConfig

    config = RunConfig()
    config.data.features = ["a\nb", 'quote"d', "tab\there", "\x01"]
    assert RunConfig.from_toml(config.to_toml()) == config


def test_inspect_says_a_folder_is_one_and_describes_a_checkpoint(tw, tmp_path):
    from conftest import assert_one_line_error

    assert tw("run", "--epochs", "5", "--out", "line", "--no-plots")[0] == 0
    assert_one_line_error(tw("inspect", "line"), "line is a folder: inspect line/model.safetensors")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(tw("inspect", "empty"), "empty is a folder, and holds no model file")
    code, out, err = tw("inspect", "line/checkpoint-last.pt")
    assert code == 0, err
    assert "Resume checkpoint" in out and "Epochs trained: 5 of 5" in out
    assert "Model: linear regression (LinearRegressionModel" in out
    assert "Config: data the line y = 0.7 * X + 0.3" in out and "epochs 5" in out
    assert_one_line_error(
        tw("predict", "--model", "line/checkpoint-last.pt", "--x", "1"), "is a resume checkpoint"
    )


def test_resume_of_a_folder_no_run_wrote_says_so(tw, tmp_path):
    from conftest import assert_one_line_error

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a run")
    outcome = tw("run", "--resume", "notes")
    assert_one_line_error(outcome, "--resume notes is not a run folder", "no checkpoint-last.pt")
    assert "--force" not in outcome[2]
    assert_one_line_error(tw("run", "--resume", "notes/todo.txt"), "is a file")


def test_run_help_says_the_line_table_and_image_defaults(capsys, monkeypatch):
    from torchwork.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: )" not in text and "(default: the line) (default" not in text
    assert "--epochs EPOCHS number of epochs (default: 300; tables: until converged" in text
    assert "(default: params; tables: linear; text files: linear; images: cnn)" in text
    assert "(default: l1; tables: auto; text files: auto; images: auto)" in text
    assert "images: 30)" in text and "(default: none; images: cosine, tinyvgg none)" in text
    assert "images: 8, tinyvgg off)" in text
    assert "TRAIN.LR" not in text


def test_predict_out_and_x_mistakes(tw, tmp_path):
    from conftest import assert_one_line_error
    from torchwork import LinearRegressionModelV2, save

    save(LinearRegressionModelV2(2), tmp_path / "two.safetensors")
    assert tw("predict", "--model", "two.safetensors", "--x", "0.5,0.9", "--out", "p.csv")[0] == 0
    before = (tmp_path / "p.csv").read_text()
    assert_one_line_error(
        tw("predict", "--model", "two.safetensors", "--x", "1,2", "--out", "p.csv"),
        "--out p.csv already exists",
        "--force",
    )
    assert (tmp_path / "p.csv").read_text() == before
    forced = tw("predict", "--model", "two.safetensors", "--x", "1,2", "--out", "p.csv", "--force")
    assert forced[0] == 0 and (tmp_path / "p.csv").read_text() != before
    assert_one_line_error(
        tw("predict", "--model", "two.safetensors", "--x", "1,2", "--out", "a\nb.csv"),
        "control character",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "two.safetensors"]
    assert_one_line_error(
        tw("predict", "--model", "two.safetensors", "--x", "0.5"),
        "takes 2 features per row",
        "--x 0.5,0.9",
    )
    assert_one_line_error(
        tw("predict", "--model", "two.safetensors", "--x", "0.5", "0.9"),
        "gave 2 rows of one value each",
        "--x 0.5,0.9",
    )


def test_momentum_with_adam_is_refused(tw, tmp_path):
    from conftest import assert_one_line_error

    outcome = tw("run", "--optimizer", "adam", "--momentum", "0.9", "--out", "never")
    assert_one_line_error(outcome, "--momentum is SGD's", "--optimizer sgd")
    assert not (tmp_path / "never").exists()


def test_untrusted_model_files_are_one_short_line_for_every_command(tw, tmp_path):
    import json

    from safetensors.torch import save_file

    from conftest import assert_one_line_error
    from torchwork import MLP, LinearRegressionModel, save

    (tmp_path / "rows.csv").write_text("x,y\n0.5,0.65\n")
    state = {k: v.contiguous() for k, v in MLP(1, [8]).state_dict().items()}
    description = {"kind": "mlp", "in_features": 1, "out_features": 1, "hidden": [1] * 300_010}
    metadata = {"format": "torchwork", "format_version": "1", "model": json.dumps(description)}
    save_file(state, str(tmp_path / "bomb.safetensors"), metadata=metadata)
    save(LinearRegressionModel(), tmp_path / "step.safetensors", config={"data": {"step": 1e-9}})
    for name, message in (("bomb", "300,010 hidden layers"), ("step", "1e+09 rows")):
        model = f"{name}.safetensors"
        for args in (
            ("inspect", model),
            ("predict", "--model", model, "--x", "0.5"),
            ("evaluate", "--model", model, "--data", "rows.csv"),
            ("export", "--model", model, "--format", "pt2"),
        ):
            outcome = tw(*args)
            assert_one_line_error(outcome, message)
            assert len(outcome[2]) < 300, args
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bomb.safetensors",
        "rows.csv",
        "step.safetensors",
    ]


def test_a_classifier_is_shown_as_one(tw, tmp_path):
    from torchwork import LinearRegressionModelV2, save

    # As earlier versions wrote it: a LinearRegressionModelV2 description, a binary task.
    save(LinearRegressionModelV2(2), tmp_path / "old.safetensors", preprocess={"task": "binary"})
    code, out, err = tw("inspect", "old.safetensors")
    assert code == 0, err
    assert "Model: logistic regression (LinearClassifier) on 2 inputs" in out
    assert "LinearClassifier(" in out and "LinearRegressionModelV2" not in out


def test_a_closed_pipe_ends_quietly(course_run):
    # `torchwork inspect ... | head -1`: the reader is gone before the output is written.
    read, write = os.pipe()
    os.close(read)
    result = subprocess.run(
        [sys.executable, "-m", "torchwork", "inspect", str(course_run[0] / "model.safetensors")],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(write)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


def test_a_run_without_test_rows_completes(tmp_path, monkeypatch):
    # --test 0 leaves the test split empty (found by test_random_flag_values).
    from torchwork.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--test", "0", "--epochs", "5", "--no-plots", "--out", "r"]) == 0
    assert (tmp_path / "r" / "model.safetensors").is_file()
