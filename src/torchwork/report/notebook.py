"""A run folder as Jupyter shows it: `torchwork.run` returns a RunFolderPath, the run folder's
Path that displays the heart of its report in the notebook (the sections of report.html).

>>> result = run(RunConfig(out="runs/demo"))  # doctest: +SKIP
>>> result  # the last line of a cell: the report, in the notebook  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from torchwork.report.format import _e, _finished
from torchwork.report.html import (
    _metrics_section,
    _overview,
    _parameters_section,
    _pictures_section,
)
from torchwork.runfolder import PLOTS, REPORT, SUMMARY, RunFolder, read_run_folder

# Every rule starts with the wrapper's class: the fragment restyles nothing else on the page.
# The notebook's own colours and fonts are kept; lines are grey at any theme's brightness.
CSS = """
.torchwork-run { max-width: 72rem; }
.torchwork-run h4 { margin: 1rem 0 .4rem; }
.torchwork-run .muted { opacity: .7; }
.torchwork-run .facts { display: grid; gap: .4rem; margin: .5rem 0;
  grid-template-columns: repeat(auto-fill, minmax(8rem, 1fr)); }
.torchwork-run .fact { border: 1px solid rgba(127, 127, 127, .35); border-radius: 6px;
  padding: .3rem .6rem; }
.torchwork-run .fact.wide { grid-column: span 2; }
.torchwork-run .fact b { display: block; font-size: .7rem; font-weight: 600; opacity: .7;
  letter-spacing: .04em; text-transform: uppercase; }
.torchwork-run .scroll { overflow-x: auto; margin: .4rem 0 .8rem; }
.torchwork-run table { border-collapse: collapse; margin: 0; }
.torchwork-run th, .torchwork-run td { padding: .25rem .6rem; text-align: left;
  white-space: nowrap; border-bottom: 1px solid rgba(127, 127, 127, .35); }
.torchwork-run .num { text-align: right; }
.torchwork-run tr.ref td { opacity: .7; }
.torchwork-run td.learned { font-weight: 600; }
.torchwork-run .figures { display: grid; gap: .75rem;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 22rem), 1fr)); }
.torchwork-run figure { margin: 0; padding: .4rem; background: #fff; color: #1f2328;
  border: 1px solid rgba(127, 127, 127, .35); border-radius: 6px; }
.torchwork-run figure img { display: block; width: 100%; height: auto; }
.torchwork-run figcaption { font-size: .85rem; padding-top: .3rem; }
.torchwork-run figcaption .muted { color: #59636e; opacity: 1; }
"""


class RunFolderPath(type(Path())):  # type: ignore[misc]  # Python 3.11 subclasses PosixPath
    """The run folder that `run` and `resume` return: a pathlib.Path like any other, that a
    notebook shows as the run's report (metrics beside the closed-form answer, learned
    against true parameters, the pictures)."""

    def with_segments(self, *segments: str | Path) -> Path:
        # Python 3.12 and later: paths made from this one (folder / "plots") are plain Paths.
        return Path(*segments)

    def _repr_html_(self) -> str | None:
        # A path made from this one on Python 3.11 keeps the type: shown as text when it
        # is not a run folder.
        if not (self / SUMMARY).is_file():
            return None
        return run_html(read_run_folder(self))


def run_html(run: RunFolder) -> str:
    """The run's report as an HTML fragment for a notebook: its overview, the metrics beside
    the reference, the learned parameters and the pictures, with CSS scoped to itself."""
    s = run.summary
    report = run.path / REPORT
    full = f"; the full report: <code>{_e(str(report))}</code>" if report.is_file() else ""
    parts = [
        f"<p><b>torchwork run</b> <code>{_e(str(run.path))}</code> · "
        f"{_e(_finished(run.path))}{full}</p>",
        _overview(run),
        "<h4>Evaluation</h4>",
        _metrics_section(s),
    ]
    parameters = _parameters_section(s)
    if parameters:
        parts += ["<h4>Learned parameters</h4>", parameters]
    parts += ["<h4>Pictures</h4>", _pictures_section(run.path / PLOTS, run.summary)]
    body = "\n".join(parts)
    return f'<div class="torchwork-run">\n<style>{CSS}</style>\n{body}\n</div>'
