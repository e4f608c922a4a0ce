"""Property-based tests: whatever a user throws at the command line, the answer is a result
or one clean line with exit code 2 (3 for a diverged run), never a traceback, a hang or a
half-written output folder."""

import contextlib
import os
import re
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from torchwork.cli import main
from torchwork.cli.parser import RUN_FLAGS

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def call(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_outcome(outcome, folder: Path | None = None) -> None:
    code, _, err = outcome
    event(f"exit code {code}")
    assert code in (0, 2, 3), outcome
    assert "Traceback" not in err
    if code != 0:
        assert len(err.strip().splitlines()) == 1, err
    if code == 2 and folder is not None:
        assert not folder.exists(), "an error left an output folder behind"


@contextlib.contextmanager
def fresh_dir():
    """A new empty working folder for each example (hypothesis reuses fixtures)."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(before)


@SETTINGS
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".pth", ".pt", ".safetensors"]))
def test_random_bytes_as_a_model_file(capsys, data, suffix):
    with fresh_dir() as workdir:
        path = workdir / f"model{suffix}"
        path.write_bytes(data)
        for args in (
            ("predict", "--model", str(path), "--x", "1"),
            ("inspect", str(path)),
            ("evaluate", "--model", str(path), "--data", str(path)),
        ):
            outcome = call(capsys, *args)
            assert outcome[0] == 2, outcome
            check_outcome(outcome)


@SETTINGS
@given(
    data=st.binary(max_size=2000),
    suffix=st.sampled_from([".csv", ".tsv", ".parquet", ".npy", ".npz", ".xlsx"]),
)
def test_random_bytes_as_a_data_file(capsys, data, suffix):
    with fresh_dir() as workdir:
        path = workdir / f"data{suffix}"
        path.write_bytes(data)
        out = workdir / "out"
        check_outcome(
            call(
                capsys, "run", "--data", str(path), "--epochs", "2", "--out", str(out), "--no-plots"
            ),
            out,
        )


cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(
        ["", "NA", "nan", "inf", "-inf", "red", "blue", "x y", '"quoted, comma"', "1e400"]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + " .-", max_size=6),
)


@SETTINGS
@given(
    header=st.lists(
        st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=4), min_size=1, max_size=4
    ),
    rows=st.lists(st.lists(cell, min_size=1, max_size=5), max_size=30),
    extra=st.lists(
        st.sampled_from(["--dropna", "--task", "binary", "--task", "regression", "--model", "mlp"]),
        max_size=2,
    ),
)
def test_random_csv_text(capsys, header, rows, extra):
    with fresh_dir() as workdir:
        text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
        (workdir / "t.csv").write_text(text)
        out = workdir / "out"
        args = [
            "run",
            "--data",
            "t.csv",
            "--epochs",
            "3",
            "--hidden",
            "4",
            "--out",
            str(out),
            "--no-plots",
            *extra,
        ]
        if args[-1] == "--task":
            args.pop()
        check_outcome(call(capsys, *args), out)


KEYS = {
    "data": [
        "weight",
        "bias",
        "start",
        "end",
        "step",
        "noise",
        "train",
        "val",
        "test",
        "shuffle",
        "target",
        "features",
        "task",
        "dropna",
        "categorical",
        "scale",
        "bogus",
    ],
    "model": ["kind", "hidden", "bogus"],
    "train": [
        "loss",
        "optimizer",
        "lr",
        "momentum",
        "batch_size",
        "patience",
        "log_every",
        "seed",
        "device",
        "checkpoint_every",
        "bogus",
    ],
}
toml_value = st.one_of(
    st.booleans().map(lambda b: "true" if b else "false"),
    st.integers(-3, 500).map(str),
    st.floats(-2, 2).map(repr),
    st.sampled_from(
        [
            '"l1"',
            '"mse"',
            '"adam"',
            '"mlp"',
            '"linear"',
            '"cpu"',
            '"cuda"',
            '"x"',
            "[8, 4]",
            '["a"]',
            "[]",
            "inf",
            "nan",
            "1e9",
            "-0.5",
        ]
    ),
)


@SETTINGS
@given(
    entries=st.lists(st.tuples(st.sampled_from(sorted(KEYS)), st.data()), max_size=6),
)
def test_random_toml_configs(capsys, entries):
    with fresh_dir() as workdir:
        sections: dict[str, list[str]] = {}
        for section, data in entries:
            key = data.draw(st.sampled_from(KEYS[section]))
            sections.setdefault(section, []).append(f"{key} = {data.draw(toml_value)}")
        text = "".join(
            f"[{name}]\n" + "\n".join(dict.fromkeys(lines)) + "\n"
            for name, lines in sections.items()
        )
        (workdir / "run.toml").write_text(text)
        out = workdir / "out"
        # Flags win over the file: a short run, so that a valid config finishes quickly.
        check_outcome(
            call(
                capsys,
                "run",
                "--config",
                "run.toml",
                "--epochs",
                "3",
                "--out",
                str(out),
                "--no-plots",
            ),
            out,
        )


FLAGS = [
    flag
    for flag, _, options, _ in RUN_FLAGS
    if options.get("action") is None and flag not in ("--out", "--data")
]
flag_value = st.one_of(
    st.integers(-3, 2000).map(str),
    st.floats(-1e3, 1e3, allow_nan=False).map(repr),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "0",
            "1e-9",
            "abc",
            "",
            "8,8",
            "a,b",
            "mlp",
            "sgd",
            "l1",
            "auto",
            "cpu",
        ]
    ),
)


@SETTINGS
@given(pairs=st.lists(st.tuples(st.sampled_from(FLAGS), flag_value), max_size=4))
def test_random_flag_values(capsys, pairs):
    with fresh_dir() as workdir:
        args = [item for flag, value in pairs for item in (flag, value)]
        out = workdir / "out"
        # The last --epochs wins: keep valid runs short; bound the data so no run is huge.
        outcome = call(
            capsys,
            "run",
            *args,
            "--epochs",
            "3",
            "--batch-size",
            "0",
            "--out",
            str(out),
            "--no-plots",
        )
        check_outcome(outcome, out)


# --- The terminal's tables ---------------------------------------------------------------

metric_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e12, -1e12, 1e-12, -1e-12, 0.0, -0.0, 9999.999999, -9999.9999995]),
    st.builds(lambda m, e: m * 10.0**e, st.floats(-10, 10), st.integers(-15, 15)),
)
metric_names = st.lists(
    st.sampled_from(["mae", "mse", "rmse", "r2", "accuracy", "f1", "roc_auc", "precision"]),
    min_size=1,
    max_size=6,
    unique=True,
)


def split_metrics(names, draw_value, splits):
    return {split: {n: draw_value() for n in names} for split in splits}


def assert_columns(lines: list[str], headings: list[str], cells_per_row: int, left: int):
    """Every row but the header splits into `cells_per_row` cells at whitespace; the first
    `left` columns start where they start in the other rows, the rest end where they end;
    each heading sits over its column, ending where its column's cells end."""
    header, *body = lines
    spans = [[m.span() for m in re.finditer(r"\S+", line)] for line in body]
    for line, found in zip(body, spans, strict=True):
        assert len(found) == cells_per_row, line
    starts = {tuple(s for s, _ in found[:left]) for found in spans}
    ends = {tuple(e for _, e in found[left:]) for found in spans}
    assert len(starts) == 1 and len(ends) == 1, "\n".join(lines)
    # Headings: the names over the left columns, the rest right-aligned over their cells.
    per_heading = (cells_per_row - left) // (len(headings) - left)
    (column_ends,) = ends
    for k, heading in enumerate(headings[left:]):
        end = column_ends[(k + 1) * per_heading - 1]
        assert header[end - len(heading) : end] == heading, (heading, header)
        assert header[end - len(heading) - 1] == " ", header
    for start, heading in zip(next(iter(starts)), headings[:left], strict=True):
        assert header[start : start + len(heading)] == heading, header


@settings(max_examples=200, deadline=None)
@given(
    names=metric_names,
    splits=st.lists(st.sampled_from(["train", "val", "test"]), min_size=1, unique=True),
    reference=st.booleans(),
    reference_name=st.sampled_from(["closed-form", "majority"]),
    data=st.data(),
)
def test_the_metrics_table_keeps_its_columns_apart(names, splits, reference, reference_name, data):
    from torchwork.report.text import HEADINGS, format_metrics_table

    def value():
        return data.draw(metric_value)

    metrics = split_metrics(names, value, splits)
    ref = split_metrics(names, value, splits) if reference else None
    lines = format_metrics_table(metrics, ref, reference_name).splitlines()
    assert len(lines) == 1 + len(splits) * (2 if reference else 1)
    headings = ["split", "model", *(HEADINGS.get(n, n) for n in names)]
    assert_columns(lines, headings, 2 + len(names), left=2)
    for line, (split, label) in zip(
        lines[1:],
        [(s, m) for s in splits for m in ["learned", *([reference_name] if reference else [])]],
        strict=True,
    ):
        assert line.split()[:2] == [split, label]


@settings(max_examples=200, deadline=None)
@given(
    names=metric_names,
    splits=st.lists(st.sampled_from(["val", "test"]), min_size=1, unique=True),
    fits=st.integers(1, 10),
    data=st.data(),
)
def test_the_cross_validation_spread_keeps_its_columns_apart(names, splits, fits, data):
    from torchwork.report.text import HEADINGS, format_spread

    def value():
        return data.draw(metric_value)

    result = {
        "mean": split_metrics(names, value, splits),
        "std": split_metrics(names, value, splits),
        "fits": [{}] * fits,
    }
    title, *lines = format_spread(result).splitlines()
    assert f"Over {fits} fits" in title
    headings = ["split", *(HEADINGS.get(n, n) for n in names)]
    # a cell is three: the mean, +/-, the standard deviation, each lined up
    assert_columns(lines, headings, 1 + 3 * len(names), left=1)
    for line in lines[1:]:
        assert line.split()[2::3] == ["+/-"] * len(names), line


def test_the_learned_line_keeps_its_columns_apart(tw, tmp_path):
    """The line's parameters beside a true weight of 1e9 (the table of format_table, as the
    metrics and the spread above)."""
    code, out, err = tw("run", "--weight", "1e9", "--epochs", "1", "--no-plots", "--out", "r")
    assert code == 0, err
    lines = out.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:2] == ["learned", "closed-form"]
    )
    for line in lines[header + 1 : header + 3]:
        assert len(line.split()) == 4, line  # name, learned, closed-form, true
