"""--folds and --repeats: the folds themselves, the fits' spread in summary.json and the report,
the final model untouched by them, and the errors a user can cause."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_one_line_error, write_csv, write_digits
from torchwork.data import fold_indices


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


# --- the folds ---------------------------------------------------------------------------


@pytest.mark.parametrize("rows,folds,seed", [(10, 2, 0), (101, 5, 1), (7, 7, 2), (1000, 3, 3)])
def test_folds_are_disjoint_and_cover_every_row(rows, folds, seed):
    parts = fold_indices(rows, folds, None, seed)
    assert len(parts) == folds
    together = torch.cat(parts)
    assert sorted(together.tolist()) == list(range(rows))  # each row exactly once
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("seed", range(5))
def test_stratified_folds_hold_each_class_within_one_of_equal(seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (203,), generator=generator)
    labels[:5] = 4  # a rare class of 5 rows
    parts = fold_indices(len(labels), 5, labels, seed)
    assert sorted(torch.cat(parts).tolist()) == list(range(len(labels)))
    for k in range(5):
        counts = [int((labels[p] == k).sum()) for p in parts]
        assert max(counts) - min(counts) <= 1, (k, counts)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert fold_indices(len(labels), 5, labels, seed)[0].equal(parts[0])  # seeded
    assert not fold_indices(len(labels), 5, labels, seed + 1)[0].equal(parts[0])


# --- runs ----------------------------------------------------------------------------------


def test_folds_give_every_metric_a_mean_and_spread(tw, tmp_path, small_table_files):
    args = ("--data", str(small_table_files / "multiclass.csv"), "--no-plots", "--seed", "3")
    code, out, err = tw("run", *args, "--folds", "4", "--out", "cv")
    assert code == 0, err
    cv = summary(tmp_path / "cv")["cross_validation"]
    assert (cv["folds"], cv["repeats"], len(cv["fits"])) == (4, 1, 4)
    assert [f["fold"] for f in cv["fits"]] == [1, 2, 3, 4]
    assert {f["seed"] for f in cv["fits"]} == {3}
    rows = summary(tmp_path / "cv")["rows"]
    assert cv["rows"] == rows["train"] + rows.get("val", 0)
    for split in ("val", "test"):
        for name, mean in cv["mean"][split].items():
            values = [f["metrics"][split][name] for f in cv["fits"]]
            assert mean == pytest.approx(statistics.fmean(values))
            assert cv["std"][split][name] == pytest.approx(statistics.stdev(values))
    accuracies = [f["metrics"]["val"]["accuracy"] for f in cv["fits"]]
    assert len(set(accuracies)) > 1  # four different validation folds
    assert "3. Cross-validation: 4 folds of the" in out and "(by class)" in out
    assert "mean +/- standard deviation" in out and "accuracy" in out

    # The final model is the one the flags make without --folds, bit for bit.
    code, _, err = tw("run", *args, "--out", "plain")
    assert code == 0, err
    a, b = (
        load_file(tmp_path / "cv/model.safetensors"),
        load_file(tmp_path / "plain/model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "cv/metrics.csv").read_bytes() == (
        tmp_path / "plain/metrics.csv"
    ).read_bytes()
    assert "cross_validation" not in summary(tmp_path / "plain")

    # And the same flags give the same fits.
    code, _, err = tw("run", *args, "--folds", "4", "--out", "again")
    assert code == 0, err
    assert summary(tmp_path / "again")["cross_validation"]["fits"] == cv["fits"]


def test_repeats_without_folds_refit_the_split_with_new_seeds(tw, tmp_path, small_table_files):
    args = (
        "--data",
        str(small_table_files / "regression.csv"),
        "--no-plots",
        "--train",
        "0.6",
        "--val",
        "0.2",
    )
    code, out, err = tw(
        "run", *args, "--repeats", "3", "--model", "mlp", "--epochs", "20", "--out", "r"
    )
    assert code == 0, err
    cv = summary(tmp_path / "r")["cross_validation"]
    assert (cv["folds"], cv["repeats"]) == (0, 3)
    assert [f["seed"] for f in cv["fits"]] == [42, 43, 44]
    assert set(cv["mean"]) == {"val", "test"} and "r2" in cv["mean"]["test"]
    assert len({f["metrics"]["test"]["r2"] for f in cv["fits"]}) == 3  # the seed matters
    assert "3 fits of the split, seeds 42 to 44" in out


def test_repeated_folds_and_the_report(tw, tmp_path, small_table_files):
    args = ("--data", str(small_table_files / "binary.csv"), "--folds", "3", "--repeats", "2")
    code, _, err = tw("run", *args, "--out", "both")
    assert code == 0, err
    cv = summary(tmp_path / "both")["cross_validation"]
    assert [(f["repeat"], f["fold"]) for f in cv["fits"]] == [
        (r, k) for r in (1, 2) for k in (1, 2, 3)
    ]
    assert [f["seed"] for f in cv["fits"]] == [42] * 3 + [43] * 3
    html = (tmp_path / "both" / "report.html").read_text()
    assert '<section id="crossval">' in html and "Cross-validation" in html
    mean = cv["mean"]["test"]["accuracy"]
    assert f"{mean:.4f} ± {cv['std']['test']['accuracy']:.4f}" in html
    assert html.count("<tr><td>") >= 6  # a row for each of the six fits


def test_folds_on_images(tw, tmp_path):
    digits = write_digits(tmp_path / "digits", per_class=12)
    fast = ("--image-size", "16", "--hidden", "8,16", "--epochs", "2", "--no-plots")
    code, _, err = tw("run", "--data", str(digits), *fast, "--folds", "3", "--out", "img")
    assert code == 0, err
    cv = summary(tmp_path / "img")["cross_validation"]
    assert len(cv["fits"]) == 3 and "accuracy" in cv["mean"]["val"]
    assert cv["rows"] == 10 * (12 - round(0.2 * 12))  # every image but the test ones


def test_a_resumed_run_keeps_its_cross_validation(tw, tmp_path, small_table_files):
    args = ("--data", str(small_table_files / "binary.csv"), "--no-plots", "--epochs", "5")
    code, _, err = tw("run", *args, "--folds", "2", "--optimizer", "adam", "--out", "cv")
    assert code == 0, err
    before = summary(tmp_path / "cv")["cross_validation"]
    code, out, err = tw("run", "--resume", "cv", "--epochs", "8")
    assert code == 0, err
    assert "Cross-validation" not in out  # not fitted again
    assert summary(tmp_path / "cv")["cross_validation"] == before


@pytest.mark.parametrize(
    "flags,message",
    [
        (("--folds", "3", "--nproc", "2"), "--folds and --repeats run in one process"),
        (("--folds", "1"), "--folds must be 0 (off) or from 2 to 100"),
        (("--folds", "101"), "--folds must be 0 (off) or from 2 to 100"),
        (("--repeats", "0"), "--repeats must be from 1 to 100"),
        (("--folds", "90"), "train + val rows of class"),
    ],
)
def test_bad_folds_are_one_line_errors_that_write_nothing(tw, tmp_path, flags, message):
    write_csv(
        tmp_path / "rare.csv",
        {"x": [float(i) for i in range(120)], "y": ["a", "b"] * 59 + ["c", "c"]},
    )
    assert_one_line_error(tw("run", "--data", "rare.csv", *flags, "--out", "bad"), message)
    assert not (tmp_path / "bad").exists()


def test_advice_for_too_few_rows_per_class_is_advice_that_works(tw, tmp_path):
    # Ten rows whose target of ten whole numbers became ten classes: fewer folds cannot work
    write_csv(tmp_path / "ten.csv", {"x": [i * 0.5 for i in range(10)], "y": list(range(10))})
    outcome = tw("run", "--data", "ten.csv", "--folds", "5", "--out", "bad")
    assert_one_line_error(
        outcome, "use --folds 0 (no cross-validation)", "at least 5 rows", "--task regression"
    )
    assert "or fewer" not in outcome[2]  # no --folds 1, which is refused
    # ...which is what was meant: the numbers as a quantity fold as asked
    code, _, err = tw(
        "run", "--data", "ten.csv", "--folds", "2", "--task", "regression", "--no-plots"
    )
    assert code == 0, err
    # Text classes are no quantity; two rows of the rarest class allow two folds
    write_csv(
        tmp_path / "rare.csv", {"x": [float(i) for i in range(20)], "y": ["a"] * 17 + ["b"] * 3}
    )
    _, _, err = tw("run", "--data", "rare.csv", "--folds", "5", "--out", "bad")
    assert "use --folds 2 or fewer, or --folds 0" in err and "--task" not in err


def test_a_long_cross_validation_says_how_long_it_will_take(tw, tmp_path, small_table_files):
    args = ("--data", str(small_table_files / "regression.csv"), "--no-plots", "--epochs", "2")
    code, out, err = tw("run", *args, "--folds", "3", "--repeats", "2", "--out", "cv")
    assert code == 0, err
    lines = out.splitlines()
    estimate = [line for line in lines if "The first fit took" in line]
    assert len(estimate) == 1 and "the 6 fits, about" in estimate[0], out
    # once, after the first fit's line, and one line a fit
    first = next(i for i, line in enumerate(lines) if "fold 1/3, repeat 1/2" in line)
    assert lines.index(estimate[0]) == first + 1
    assert sum("(seed " in line for line in lines) == 6


@pytest.mark.parametrize("signals", [1, 2])
def test_a_signal_during_the_folds_says_what_was_stopped(
    tw, tmp_path, small_table_files, monkeypatch, signals
):
    """SIGTERM during the fits: after the fit (or at once, a second time), a line that says
    nothing was written and the run cannot be resumed, exit 143, no run folder."""
    import os
    import signal

    from torchwork.workflow import crossval

    real = crossval._log_fit

    def log_fit(one, folds, repeats, log):
        real(one, folds, repeats, log)
        if one["fold"] == 2:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(crossval, "_log_fit", log_fit)
    args = ("--data", str(small_table_files / "regression.csv"), "--no-plots", "--epochs", "2")
    code, out, err = tw("run", *args, "--folds", "4", "--out", "cv")
    assert code == 143, (out, err)
    assert not (tmp_path / "cv").exists()
    last = err.strip().splitlines()[-1]
    if signals == 1:
        assert "SIGTERM received: cross-validation stopped after fit 2 of 4" in last
        assert "nothing was written" in last and "cannot be resumed" in last
        assert "fold 3/4" not in out
    else:
        assert last == (
            "torchwork run: stopped at once; nothing was written (the run folder is made once "
            "the fits are done)"
        )
    assert "stopping after this fit" in err
