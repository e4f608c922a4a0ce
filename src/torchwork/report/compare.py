"""Several run folders side by side: the config keys that differ, the final metrics, and
every run's loss curves on one picture.

Only the files the runs wrote are read; torch is not imported, matplotlib only when
`compare_runs` draws its picture.

>>> print(compare_runs(["lr-0.01", "lr-0.1"], out_png="compare.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchwork.errors import RunFolderError
from torchwork.fileio import write_text_atomic
from torchwork.report.format import (
    HEADINGS,
    _e,
    _epochs,
    _figure,
    _final_metrics,
    _finished,
    _flatten,
    _num,
    _page,
    _scroll,
    _seconds,
    _toml,
)
from torchwork.runfolder import RunFolder, read_run_folder

TEXT_HEADINGS = {"r2": "R^2"}  # the terminal keeps to ASCII, as report.text.format_metrics_table


def compare_runs(
    folders: Sequence[str | Path],
    out_png: str | Path | None = None,
    out_html: str | Path | None = None,
) -> str:
    """Compare run folders: the config keys that differ and each run's final metrics.

    Returns the comparison as a text table for the terminal. With `out_png`, also draws
    every run's train and test loss curves on one picture; with `out_html`, writes a
    self-contained page holding the table and the picture.
    """
    if len(folders) < 2:
        raise RunFolderError(
            f"compare needs at least two run folders (got {len(folders)}): "
            "give two or more folders written by torchwork run"
        )
    runs = [read_run_folder(f) for f in folders]
    names = _run_names(runs)
    rows = _comparison_rows(runs)
    text = _text_table(names, rows)
    png = None
    if out_png is not None or out_html is not None:
        figure = _loss_overlay(runs, names)
        if out_png is not None:
            from torchwork.plots import save_figure

            save_figure(figure, out_png)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        png = buffer.getvalue()
    if out_html is not None:
        write_text_atomic(out_html, _compare_html(runs, names, rows, png))
    return text


def _compare_html(
    runs: list[RunFolder], names: list[str], rows: list[tuple[str, list[str]]], png: bytes | None
) -> str:
    listing = "".join(
        f"<li><b>{_e(name)}</b>: {_e(str(run.path))} ({_e(_finished(run.path))})</li>"
        for name, run in zip(names, runs, strict=True)
    )
    head = "".join(f'<th class="num">{_e(n)}</th>' for n in names)
    body = []
    for label, values in rows:
        if not values:
            body.append(f'<tr class="group"><th colspan="{len(names) + 1}">{_e(label)}</th></tr>')
            continue
        cells = "".join(f'<td class="num">{_e(v)}</td>' for v in values)
        label = {v: HEADINGS[k] for k, v in TEXT_HEADINGS.items()}.get(label, label)
        body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    table = _scroll(
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
    picture = _figure(png, "Training and test loss curves of every run") if png is not None else ""
    title = f"torchwork: {len(runs)} runs compared"
    content = (
        f"<header><h1>{_e(title)}</h1></header>\n"
        f'<section id="runs"><h2>Runs</h2><ul>{listing}</ul></section>\n'
        f'<section id="table"><h2>What differs, and the final metrics</h2>\n'
        f'<p class="muted">Only config keys whose values differ are shown.</p>{table}</section>\n'
        f'<section id="curves"><h2>Loss curves</h2><div class="figures one">{picture}</div>'
        "</section>"
    )
    return _page(title, content)


def _run_names(runs: list[RunFolder]) -> list[str]:
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        names = [str(r.path) for r in runs]
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return names


def _comparison_rows(runs: list[RunFolder]) -> list[tuple[str, list[str]]]:
    """(label, one value per run) rows; a label with no values is a group heading."""
    missing = object()
    flats = [_flatten(r.config) for r in runs]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    differing = [k for k in keys if len({_toml(f.get(k, missing)) for f in flats}) > 1]
    rows: list[tuple[str, list[str]]] = [("config (keys that differ)", [])]
    if differing:
        rows += [(k, [_plain(f.get(k, missing), missing) for f in flats]) for k in differing]
    else:
        rows.append(("(none: the configs are the same)", ["" for _ in runs]))

    finals = [_final_metrics(r.summary) for r in runs]
    names: list[str] = []
    for _, metrics in finals:
        names += [n for n in metrics if n not in names]
    rows.append(("final metrics", []))
    rows.append(("split", [split or "-" for split, _ in finals]))
    rows += [
        (
            TEXT_HEADINGS.get(n, HEADINGS.get(n, n)),
            [_num(m[n]) if n in m else "-" for _, m in finals],
        )
        for n in names
    ]
    rows.append(("training", []))
    rows.append(("epochs run", [_epochs(r.summary, f) for r, f in zip(runs, flats, strict=True)]))
    rows.append(
        ("stopped early", ["yes" if r.summary.get("stopped_early") else "no" for r in runs])
    )
    rows.append(("training time", [_seconds(r.summary.get("seconds")) for r in runs]))
    return rows


def _text_table(names: list[str], rows: list[tuple[str, list[str]]]) -> str:
    labels = [("  " + label) if values else label for label, values in rows]
    first = max(len(label) for label in labels) + 2
    widths = [
        max(len(name), *(len(values[i]) for _, values in rows if values)) + 2
        for i, name in enumerate(names)
    ]
    lines = [" " * first + "".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))]
    for label, (_, values) in zip(labels, rows, strict=True):
        if not values:
            lines.append(label)
            continue
        cells = "".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        lines.append(f"{label:<{first}}{cells}".rstrip())
    return "\n".join(lines)


def _loss_overlay(runs: list[RunFolder], names: list[str]) -> Any:
    from torchwork.plots import Figure, curve_markers

    fig = Figure(figsize=(10, 7))
    ax = fig.add_subplot()
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        colour = f"C{i % 10}"
        for column, style, label in (("train_loss", "-", "train"), ("test_loss", "--", "test")):
            points = [(r["epoch"], r[column]) for r in run.history if "epoch" in r and column in r]
            if points:
                epochs, losses = zip(*points, strict=True)
                ax.plot(
                    epochs,
                    losses,
                    style,
                    color=colour,
                    label=f"{name} {label} loss",
                    **curve_markers(len(epochs)),
                )
    ax.set_title("Training and test loss curves")
    ax.set_ylabel("Loss")
    ax.set_xlabel("Epochs")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return fig


def _plain(value: Any, missing: object) -> str:
    # For the terminal: strings without quotes unless empty, a missing key as "-".
    if value is missing:
        return "-"
    if isinstance(value, str):
        return value or '""'
    return _toml(value)
