"""The command line: parse, call the library, print. No training logic lives here.

torch is imported only inside the commands that need it, so `torchwork --help` is fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from torchwork.cli.commands import COMMANDS
from torchwork.cli.parser import EXIT_USAGE, build_parser
from torchwork.errors import TorchworkError


def main(argv: Sequence[str] | None = None) -> int:
    from torchwork.distributed import follow_launcher, say_last, typed

    follow_launcher()  # a process of `run --nproc` ends with its launcher, even a killed one
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        with typed(args.argv):
            return COMMANDS[args.command](args)
    except TorchworkError as e:
        say_last(f"torchwork {args.command}: error: {e}")
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        # What stopping left, where the work knew (signals.ImmediateStop); else every file
        # written is whole, as writes are atomic
        left = getattr(e, "left", "any file written is complete")
        say_last(f"torchwork {args.command}: stopped at once; {left}")
        return 128 + signum


def entry() -> NoReturn:
    """`torchwork` and `python -m torchwork`: main(), then leave at once, however it ends.

    By then every file is written, flushed to disk and closed; tearing the interpreter down
    would only free memory and unload modules, which with torch loaded takes most of a
    second here (0.8 s of a 3 s `import torch`). It can also abort the process while other
    threads still run native code (a table still being read when an error is raised). So a
    usage error (SystemExit) and a crash, printed with its traceback, leave this way too,
    with the exit code Python would give.
    """
    try:
        code = main()
    except SystemExit as e:  # argparse: usage errors, --help, --version
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # Ctrl-C before a command started
        code = 130
    except BrokenPipeError:  # `torchwork ... | head`: the reader left; as killed by SIGPIPE
        code = 128 + 13
        with contextlib.suppress(OSError):  # nothing more reaches the closed pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: nothing left to tell
        pass
    os._exit(code)
