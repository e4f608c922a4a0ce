"""Ctrl-C and SIGTERM while training: the first stops cleanly after the epoch with a
checkpoint (or, during cross-validation, after the fit), a second at once."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from torchwork import distributed
from torchwork.errors import (
    TrainingInterrupted,
)


class StopSignals:
    """While training: the first SIGINT or SIGTERM asks for a clean stop after the current
    epoch (with a checkpoint); a second one stops at once. Atomic writes mean no file is
    left half-written either way."""

    def __init__(
        self,
        log: Callable[[str], None],
        when: str = "after this epoch with a checkpoint",
        at_once: str = "files are complete but the run is not",
    ) -> None:
        self.received: int | None = None
        self.log = log
        self.when = when  # when the first signal stops the work
        self.at_once = at_once  # what a second one leaves
        self.previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise ImmediateStop(signum, self.at_once)
        self.received = signum
        if distributed.main_process():  # every process gets it; one says so
            print(
                f"\n{signal.Signals(signum).name}: stopping {self.when} "
                "(press Ctrl-C again to stop at once)",
                file=sys.stderr,
            )

    def __enter__(self) -> StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handler)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        # A process of a distributed run that stopped cleanly only has to say so and end:
        # the signal that torchrun passes on to the others a moment later, if it comes late
        # to this one, must not make it say it stopped at once.
        stopped = kind is not None and issubclass(kind, TrainingInterrupted)
        ignore = stopped and distributed.launched()
        for signum, previous in self.previous.items():
            signal.signal(signum, signal.SIG_IGN if ignore else previous)


class ImmediateStop(KeyboardInterrupt):
    """A second signal during training: stop now (exit code 128 + the signal's number);
    `left` says what that leaves on disk."""

    def __init__(self, signum: int, left: str) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.left = left
