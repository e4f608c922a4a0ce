"""Time to load a numeric table into one contiguous float32 tensor: torchwork vs pandas.

    python benchmarks/load_tables.py [--rows 1000000] [--cols 20] [--repeats 7]

Writes a CSV and a Parquet file of random numbers to a temporary folder, checks that every
reader gives the same tensor, then times each reader from file to a contiguous float32 torch
tensor in two ways, round-robin so that every reader meets the same machine state:

- the first load in a fresh process (imports not timed): what `torchwork run --data` pays;
- repeated loads in one process, after a warm-up round.

pandas rows are skipped with a note when pandas is not installed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, machine, markdown_table

TORCHWORK = "torchwork (pyarrow)"
MODES = ("fresh process", "same process")


def torchwork_load(path: Path) -> torch.Tensor:
    from torchwork.tables.convert import table_to_tensor
    from torchwork.tables.read import read_table

    table = read_table(path)
    return table_to_tensor(table, table.column_names)


def pandas_load(path: Path, **kwargs) -> torch.Tensor:
    import pandas as pd

    reader = pd.read_parquet if path.suffix == ".parquet" else pd.read_csv
    frame = reader(path, **kwargs)
    # DataFrames hold columns; to_numpy gives a column-major block, so make it row-major.
    return torch.from_numpy(np.ascontiguousarray(frame.to_numpy(dtype=np.float32)))


READERS = {
    TORCHWORK: torchwork_load,
    "pandas.read_csv, C engine": lambda path: pandas_load(path, engine="c"),
    "pandas.read_csv, pyarrow engine": lambda path: pandas_load(path, engine="pyarrow"),
    "pandas.read_parquet": pandas_load,
}


def child(name: str, path: Path) -> None:
    """Run in a fresh process: time one load and print the seconds. Modules are imported
    first, untimed, pandas too where installed (pyarrow imports it on its first conversion
    to NumPy): only reading and converting are measured."""
    import contextlib

    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    import torchwork.kinds.encoder  # noqa: F401

    with contextlib.suppress(ImportError):
        import pandas  # noqa: F401
    load = READERS[name]
    started = time.perf_counter()
    tensor = load(path)
    seconds = time.perf_counter() - started
    assert tensor.is_contiguous() and tensor.dtype == torch.float32
    print(seconds)


def measure(rows: int, cols: int, repeats: int) -> tuple[dict[tuple[str, str, str], float], float]:
    """Median seconds per (reader, file kind, mode), and the CSV's size in MB."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        data = rng.normal(size=(rows, cols)).astype(np.float32)
        table = pa.table({f"c{i}": data[:, i] for i in range(cols)})
        paths = {"csv": Path(folder) / "t.csv", "parquet": Path(folder) / "t.parquet"}
        pcsv.write_csv(table, paths["csv"])
        pq.write_table(table, paths["parquet"])
        mb = paths["csv"].stat().st_size / 1e6

        cases = [(TORCHWORK, "csv"), (TORCHWORK, "parquet")]
        try:
            import pandas  # noqa: F401

            cases[1:1] = [
                ("pandas.read_csv, C engine", "csv"),
                ("pandas.read_csv, pyarrow engine", "csv"),
            ]
            cases.append(("pandas.read_parquet", "parquet"))
        except ImportError:
            print(
                "pandas is not installed: its rows are skipped (pip install pandas)",
                file=sys.stderr,
            )

        expected = torch.from_numpy(data)
        for name, kind in cases:
            tensor = READERS[name](paths[kind])
            assert tensor.is_contiguous() and tensor.shape == expected.shape, name
            assert torch.allclose(tensor, expected, atol=1e-6), name

        fresh: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
        for _ in range(repeats):
            for name, kind in cases:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", name, str(paths[kind])],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                fresh[name, kind].append(float(out.stdout))
        same = interleaved_medians(
            {
                f"{name}|{kind}": (lambda name=name, kind=kind: READERS[name](paths[kind]))
                for name, kind in cases
            },
            repeats,
        )
    results = {(name, kind, MODES[0]): statistics.median(t) for (name, kind), t in fresh.items()}
    for key, seconds in same.items():
        name, kind = key.split("|")
        results[name, kind, MODES[1]] = seconds
    return results, mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", nargs=2, metavar=("READER", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    results, mb = measure(args.rows, args.cols, args.repeats)
    rows = []
    for mode in MODES:
        for kind in ("csv", "parquet"):
            base = results[TORCHWORK, kind, mode]
            for (name, k, m), seconds in results.items():
                if (k, m) == (kind, mode):
                    rows.append(
                        [
                            mode,
                            kind,
                            name,
                            f"{seconds:.3f}",
                            f"{mb / seconds:.0f}" if kind == "csv" else "",
                            f"{seconds / base:.2f}x",
                        ]
                    )
    print(
        f"Loading {args.rows:,} x {args.cols} float32 into a contiguous tensor "
        f"({mb:.0f} MB of CSV), median of {args.repeats}"
    )
    print(f"Machine: {machine()}")
    header = ["timed", "file", "reader", "seconds", "CSV MB/s", "time vs torchwork"]
    print(markdown_table(header, rows))
    for mode in MODES:
        ratio = results[TORCHWORK, "csv", mode] / results[TORCHWORK, "parquet", mode]
        print(f"{mode}: Parquet is {ratio:.1f}x faster than CSV for torchwork")


if __name__ == "__main__":
    main()
