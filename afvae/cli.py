"""What every ``python -m afvae.X`` command shares: errors as one line on stderr and exit code 2.

Light on purpose (standard library only): each command parses its arguments before importing torch, so
``--help`` and bad arguments answer at once.
"""
from __future__ import annotations

import sys
from typing import NoReturn


def fail(prog: str, error: BaseException | str) -> NoReturn:
    """Print ``prog: error`` as one line on stderr and exit with code 2 (argparse's code for bad input)."""
    print(f"{prog}: {' '.join(str(error).split())}", file=sys.stderr)
    raise SystemExit(2)
