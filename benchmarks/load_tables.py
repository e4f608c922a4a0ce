"""Time to load a numeric table into one contiguous float32 tensor: torchwork vs pandas.

    python benchmarks/load_tables.py [--rows 1000000] [--cols 20]

Writes a CSV and a Parquet file of random numbers to a temporary folder, then times each
reader (median of 3 after one warm-up) from file to a contiguous float32 torch tensor.
pandas rows are skipped with a note when pandas is not installed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, machine, markdown_table

from torchwork.tables import read_table, table_to_tensor


def torchwork_load(path: Path) -> torch.Tensor:
    table = read_table(path)
    return table_to_tensor(table, table.column_names)


def pandas_load(reader, path: Path, **kwargs) -> torch.Tensor:
    frame = reader(path, **kwargs)
    # DataFrames hold columns; to_numpy gives a column-major block, so make it row-major.
    return torch.from_numpy(np.ascontiguousarray(frame.to_numpy(dtype=np.float32)))


def measure(rows: int, cols: int, repeats: int) -> tuple[dict[tuple[str, str], float], float]:
    """Median seconds per (reader, file kind), and the CSV's size in MB."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        data = rng.normal(size=(rows, cols)).astype(np.float32)
        table = pa.table({f"c{i}": data[:, i] for i in range(cols)})
        csv_path, parquet_path = Path(folder) / "t.csv", Path(folder) / "t.parquet"
        pcsv.write_csv(table, csv_path)
        pq.write_table(table, parquet_path)
        mb = csv_path.stat().st_size / 1e6

        cases = [("torchwork (pyarrow)", "csv", lambda: torchwork_load(csv_path))]
        try:
            import pandas as pd

            cases += [
                (
                    "pandas.read_csv, C engine",
                    "csv",
                    lambda: pandas_load(pd.read_csv, csv_path, engine="c"),
                ),
                (
                    "pandas.read_csv, pyarrow engine",
                    "csv",
                    lambda: pandas_load(pd.read_csv, csv_path, engine="pyarrow"),
                ),
            ]
        except ImportError:
            pd = None
            print(
                "pandas is not installed: its rows are skipped (pip install pandas)",
                file=sys.stderr,
            )
        cases.append(("torchwork (pyarrow)", "parquet", lambda: torchwork_load(parquet_path)))
        if pd is not None:
            cases.append(
                (
                    "pandas.read_parquet",
                    "parquet",
                    lambda: pandas_load(pd.read_parquet, parquet_path),
                )
            )

        expected = torch.from_numpy(data)
        for name, _, fn in cases:
            tensor = fn()
            assert (
                tensor.is_contiguous()
                and tensor.dtype == torch.float32
                and tensor.shape == expected.shape
            )
            assert torch.allclose(tensor, expected, atol=1e-6), name
        timed = interleaved_medians({f"{name}|{kind}": fn for name, kind, fn in cases}, repeats)
    return {tuple(key.split("|")): seconds for key, seconds in timed.items()}, mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results, mb = measure(args.rows, args.cols, args.repeats)
    rows = []
    for kind in ("csv", "parquet"):
        base = results[("torchwork (pyarrow)", kind)]
        for (name, k), seconds in results.items():
            if k == kind:
                rows.append(
                    [
                        kind,
                        name,
                        f"{seconds:.3f}",
                        f"{mb / seconds:.0f}" if kind == "csv" else "",
                        f"{seconds / base:.2f}x",
                    ]
                )
    print(
        f"Loading {args.rows:,} x {args.cols} float32 into a contiguous tensor ({mb:.0f} MB of CSV)"
    )
    print(f"Machine: {machine()}")
    print(
        markdown_table(
            ["file", "reader", "seconds (median)", "CSV MB/s", "time vs torchwork"], rows
        )
    )
    csv_ratio = (
        results[("torchwork (pyarrow)", "csv")] / results[("torchwork (pyarrow)", "parquet")]
    )
    print(f"Parquet is {csv_ratio:.1f}x faster than CSV for torchwork")


if __name__ == "__main__":
    main()
