"""A linear classifier is regularised as scikit-learn's LogisticRegression is (C times the
summed loss plus half the squared weights, on the standardized inputs), its C chosen on the
validation rows where there are some; a linear model trained by L-BFGS runs to convergence
instead of stopping early. Checked against scikit-learn's answer and least squares."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_one_line_error, small_tables, write_csv
from torchwork.config import L2_C_GRID, RunConfig
from torchwork.data import prepare_data
from torchwork.workflow.session import fresh_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import kill_resume

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402

EXACT = {"tol": 1e-12, "max_iter": 100_000}  # scikit-learn's optimum, not its default's stop


def write_bundled(path, name: str) -> None:
    """One of scikit-learn's bundled tables as a CSV, its target last."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    columns = {
        str(f).replace(" ", "_"): bunch.data[:, i] for i, f in enumerate(bunch.feature_names)
    }
    write_csv(path, {**columns, "target": bunch.target})


def inputs_and_weights(folder):
    """The run's model inputs as a design matrix (numbers as the run standardized them, each
    category one-hot), split by split, the class codes, and the learned coefficients and
    bias in the same order."""
    config = RunConfig.from_file(folder / "config.toml")
    data = prepare_data(config, lambda _: None)
    model = fresh_model(config, data)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    X = {}
    for split, inputs in data.X.items():
        parts = []
        for layer, tensor in zip(model.blocks, inputs.tensors, strict=True):
            if layer.adds:  # a category block: one row of weights per category
                one_hot = torch.zeros(len(tensor), layer.inputs, dtype=torch.float64)
                one_hot.scatter_(1, tensor.long() + layer.offsets, 1.0)
                parts.append(one_hot)
            else:
                parts.append(tensor.double())
        X[split] = torch.cat(parts, dim=1).numpy()
    y = {split: codes.reshape(-1).numpy() for split, codes in data.y_raw.items()}
    weights = model.input_weights().detach().double().numpy()
    return X, y, weights, model.first_layer.bias.detach().double().numpy(), config


def relative(a, b) -> float:
    """The largest difference, relative to the largest coefficient."""
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def breast_cancer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("breast-cancer")
    write_bundled(folder / "breast_cancer.csv", "breast_cancer")
    return folder


def test_the_default_linear_classifier_is_scikit_learns_logistic_regression(
    breast_cancer, tw, monkeypatch
):
    monkeypatch.chdir(breast_cancer)
    code, out, err = tw("run", "--data", "breast_cancer.csv", "--out", "c1", "--no-plots")
    assert code == 0, err
    assert "l2_c 1.0 (no validation rows to choose it on" in out
    X, y, weights, bias, config = inputs_and_weights(breast_cancer / "c1")
    assert config.train.l2_c == 1.0  # config.toml repeats it
    answer = LogisticRegression(C=1.0, **EXACT).fit(X["train"], y["train"])
    assert relative(weights, answer.coef_) < 1e-3
    assert bias == pytest.approx(answer.intercept_, abs=1e-3)
    summary = json.loads((breast_cancer / "c1" / "summary.json").read_text())
    accuracy = summary["metrics"]["test"]["accuracy"]
    assert accuracy == answer.score(X["test"], y["test"])
    assert accuracy == LogisticRegression().fit(X["train"], y["train"]).score(X["test"], y["test"])
    assert accuracy > 0.96  # 0.947 unregularised

    # --l2-c none: the unregularised model of before, whose weights grow far larger
    code, _, err = tw(
        "run", "--data", "breast_cancer.csv", "--out", "none", "--no-plots", "--l2-c", "none"
    )
    assert code == 0, err
    _, _, unregularised, _, _ = inputs_and_weights(breast_cancer / "none")
    assert np.abs(unregularised).max() > 10 * np.abs(weights).max()


def test_validation_rows_choose_c_as_scikit_learns_lowest_validation_log_loss(
    breast_cancer, tw, monkeypatch
):
    monkeypatch.chdir(breast_cancer)
    flags = ("--train", "0.6", "--val", "0.2", "--no-plots", "--no-reference")
    code, out, err = tw("run", "--data", "breast_cancer.csv", "--out", "val", *flags)
    assert code == 0, err
    X, y, weights, _, config = inputs_and_weights(breast_cancer / "val")
    losses = {
        C: log_loss(
            y["val"],
            LogisticRegression(C=C, **EXACT).fit(X["train"], y["train"]).predict_proba(X["val"]),
        )
        for C in L2_C_GRID
    }
    best = min(losses, key=losses.__getitem__)
    assert config.train.l2_c == best
    assert f"l2_c {best} (the lowest validation loss of C = 0.01, 0.1, 1, 10, 100" in out
    # L-BFGS was not stopped early on the validation rows: it ran to convergence
    assert config.train.patience == 0 and "patience 0 (a linear model: L-BFGS runs" in out
    summary = json.loads((breast_cancer / "val" / "summary.json").read_text())
    assert summary["converged"] and not summary["stopped_early"]
    answer = LogisticRegression(C=best, **EXACT).fit(X["train"], y["train"])
    assert relative(weights, answer.coef_) < 1e-3


def test_a_multiclass_model_with_a_category_is_penalised_as_one_hot_columns(tmp_path, tw):
    write_csv(tmp_path / "multiclass.csv", small_tables(rows=300)["multiclass"])
    code, out, err = tw(
        "run", "--data", "multiclass.csv", "--out", "m", "--no-plots", "--l2-c", "0.5"
    )
    assert code == 0, err
    assert "category color" in out
    X, y, weights, bias, config = inputs_and_weights(tmp_path / "m")
    assert config.train.l2_c == 0.5 and weights.shape[0] == 3
    answer = LogisticRegression(C=0.5, **EXACT).fit(X["train"], y["train"])
    assert relative(weights, answer.coef_) < 1e-3
    # softmax's biases, not penalised, are the same up to one shift of them all
    centred = answer.intercept_ - answer.intercept_.mean()
    assert bias - bias.mean() == pytest.approx(centred, abs=1e-3)


def test_a_linear_regression_with_validation_rows_reaches_least_squares(tmp_path, tw):
    # On diabetes with --val, early stopping kept L-BFGS's epoch 3: s1 -191 against -826
    write_bundled(tmp_path / "diabetes.csv", "diabetes")
    code, out, err = tw(
        "run",
        "--data",
        "diabetes.csv",
        "--train",
        "0.6",
        "--val",
        "0.2",
        "--out",
        "d",
        "--no-plots",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["converged"] and not summary["stopped_early"]
    learned, closed_form = (
        np.array(summary["coefficients"][k]["weight"]) for k in ("learned", "closed_form")
    )
    assert relative(learned, closed_form) < 1e-3
    assert RunConfig.from_file(tmp_path / "d" / "config.toml").train.l2_c == "none"
    assert "L2 penalty" not in out


@pytest.mark.parametrize(
    ("table", "flags", "message"),
    [
        ("regression", ("--l2-c", "1"), "a regression's linear model is least squares"),
        ("binary", ("--model", "mlp", "--l2-c", "1"), "--model mlp is none"),
        ("binary", ("--l2-c", "0"), "--l2-c must be a number above 0"),
        ("binary", ("--l2-c", "-1"), "--l2-c must be a number above 0"),
    ],
)
def test_a_c_that_would_be_ignored_or_is_no_c_is_one_line(tmp_path, tw, table, flags, message):
    write_csv(tmp_path / f"{table}.csv", small_tables()[table])
    assert_one_line_error(tw("run", "--data", f"{table}.csv", "--no-plots", *flags), message)
    assert not (tmp_path / "runs").exists()


def test_a_penalised_run_resumes_bit_identical(tmp_path, tw):
    write_csv(tmp_path / "binary.csv", small_tables()["binary"])
    common = ("--data", "binary.csv", "--train", "0.6", "--val", "0.2", "--no-plots")
    assert tw("run", *common, "--epochs", "12", "--out", "short")[0] == 0
    code, out, err = tw("run", "--resume", "short", "--epochs", "30")
    assert code == 0, err
    # the C chosen is in the checkpoint's config: resuming fits no grid again
    assert "Resuming short after epoch 11 of 30" in out and "fitted to convergence" not in out
    assert tw("run", *common, "--epochs", "30", "--out", "long")[0] == 0
    assert kill_resume.identical(tmp_path / "long", tmp_path / "short") == []
    assert isinstance(RunConfig.from_file(tmp_path / "long" / "config.toml").train.l2_c, float)


def test_the_penalty_is_half_the_squared_weights_over_c_rows_and_spares_the_bias():
    from torchwork.models import LinearClassifier
    from torchwork.optim import l2_penalty

    torch.manual_seed(0)
    model = LinearClassifier(4, 3, "multiclass")
    penalty = l2_penalty(model, C=0.5, rows=10)()
    weight = model.linear_layer.weight
    assert penalty.item() == pytest.approx((weight**2).sum().item() / (2 * 0.5 * 10), rel=1e-6)
    penalty.backward()
    assert model.linear_layer.bias.grad is None
    assert torch.allclose(weight.grad, weight.detach() / (0.5 * 10))
