"""The exceptions for mistakes a user can fix, one class for each kind of thing to fix.

The command line prints any of them on one line, without a traceback, and exits with its
`exit_code`: 2 unless the class says otherwise. A library caller can catch one kind
(`except DataError`) or all of them (`except TorchworkError`).
"""

import signal
from collections.abc import Iterable
from typing import Any


class TorchworkError(Exception):
    """A problem the user can fix; its message is one sentence that says what to change."""

    exit_code = 2


class ConfigError(TorchworkError):
    """A setting: a flag, a config file's key or value, or settings that contradict."""


class DataError(TorchworkError):
    """The data: a file that cannot be read, a missing column, a value that is not a number."""


class ModelFileError(TorchworkError):
    """A model file or checkpoint: missing, corrupt, of another format, or not matching."""


class RunFolderError(TorchworkError):
    """A run folder: missing, incomplete, or one that would be overwritten."""


class TrainingError(TorchworkError):
    """Training could not go on: the loss diverged, or a signal stopped it."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite: training cannot continue from here."""

    exit_code = 3

    def __init__(self, epoch: int, loss: float, kept: str = "") -> None:
        self.epoch = epoch
        self.loss = loss
        super().__init__(
            f"training diverged at epoch {epoch} (the training loss became {loss}): "
            f"lower the learning rate (for example --lr 0.001) or scale the data{kept}"
        )


class TrainingInterrupted(TrainingError):
    """A signal stopped training after a checkpoint; the run can be resumed."""

    def __init__(self, signum: int, epoch: int, folder: object) -> None:
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: stopped after epoch {epoch - 1} with a checkpoint; "
            f"resume with: torchwork run --resume {folder}"
        )


class FitsInterrupted(TrainingError):
    """A signal stopped cross-validation after a fit, before the run folder was made."""

    def __init__(self, signum: int, done: int, total: int) -> None:
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: cross-validation stopped after fit {done} of {total:,}; nothing "
            "was written (the run folder is made once the fits are done), so it cannot be "
            "resumed: run the command again to start over"
        )


# Message helpers: what an error says about values it quotes, kept to one short line.


def few(names: Iterable[Any], shown: int = 3) -> str:
    """Names for a one-line message: the first few, then how many more
    ("'a', 'b', 'c' and 299,998 more"); 'none' for none."""
    names = list(names)
    if not names:
        return "none"
    text = ", ".join(_short(n) for n in names[:shown])
    return text + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def one_line(error: Exception | str, limit: int = 300) -> str:
    """An error's message as one short line: a message about a file can quote the file."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _short(name: Any, limit: int = 40) -> str:
    text = repr(name)  # quotes and escapes: a name from a file prints as one plain line
    return text if len(text) <= limit else text[: limit - 4] + "...'"
