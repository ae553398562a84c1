"""`avatar-studio` command line. Every command drives the same stage functions as the GUI.

Errors reach the user as one line (what is wrong and what to do) with a non-zero exit code;
unexpected bugs leave their traceback in the project's logs/ folder, not on the screen.

The package, one concept a module:
- this module: `main` (the entry point `studio.cli:main`) and how a run ends: exit codes, one-line errors;
- `parser`: `build_parser`, every command's options and help;
- `common`: what every command shows (`ProgressPrinter`, `_say`, notes, quoted paths) and the quiet and crash exits;
- `project_commands`: `new`, `status`, `run-stage`, `queue`, `config`, `run`;
- `avatar_commands`: `eval`, `export`, `drive`, `edit`;
- `tool_commands`: `models`, `bench`, `gui`;
- `__main__`: `python -m studio.cli ARGS…` (as torchrun starts each process of a stage).
"""
from __future__ import annotations

import sys

from ..errors import Cancelled, StudioError
from .common import ProgressPrinter, _output_gone, _quiet_exit, _unexpected
from .parser import build_parser

__all__ = ["main", "build_parser", "ProgressPrinter"]


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:          # only where the reader of our output went (argparse's help, say)
        if _output_gone():
            return _quiet_exit()
        raise


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError as exc:
        if _output_gone():           # `avatar-studio status P | head -1`: not a problem, stop quietly
            return _quiet_exit()
        return _unexpected(exc)      # another pipe (a child process, ffmpeg) broke: a real problem
    except Cancelled as exc:
        print(f"\ncancelled — {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ncancelled — run the same command again to resume", file=sys.stderr)
        return 130
    except StudioError as exc:
        msg = exc.message.rstrip(".")
        print(f"error: {msg}." + (f" {exc.hint[0].upper()}{exc.hint[1:]}." if exc.hint else ""), file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug: one line on screen, traceback in a log file
        return _unexpected(exc)
