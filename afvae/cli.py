"""What every ``python -m afvae.X`` command shares: errors as one line on stderr and exit code 2.

Light on purpose (standard library only): each command parses its arguments before importing torch, so
``--help`` and bad arguments answer at once.
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def fail(prog: str, error: BaseException | str, debug: bool = False) -> NoReturn:
    """Print ``prog: error`` as one line on stderr and exit with code 2 (argparse's code for bad input).

    With ``debug`` (the command's ``--debug``), an exception is raised again instead, with its traceback.
    """
    if debug and isinstance(error, BaseException):
        raise error
    print(f"{prog}: {' '.join(str(error).split())}", file=sys.stderr)
    raise SystemExit(2)


def add_debug(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a command ``--debug``: show an error's full traceback instead of its one line."""
    p.add_argument("--debug", action="store_true", help="on an error, show the full traceback instead of one line")
    return p


def at_least_1(text: str) -> int:
    """argparse type of a count: an integer >= 1 (``--n 0`` is refused as the command line is parsed)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n
