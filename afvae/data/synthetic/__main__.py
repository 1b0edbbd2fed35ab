"""``python -m afvae.data.synthetic``: export the synthetic dataset to a folder (``export_synthetic``)."""
from __future__ import annotations

import argparse
from typing import Sequence

from afvae.cli import fail

PROG = "python -m afvae.data.synthetic"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export the synthetic dataset to a folder.")
    p.add_argument("--out", default="data/synthetic", help="output folder (replaced atomically)")
    p.add_argument("--size", type=int, default=64, choices=(32, 64, 128, 256))
    p.add_argument("--identities", type=int, default=200)
    p.add_argument("--per-identity", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    a = parser().parse_args(argv)
    from afvae.data.datasets import export_synthetic

    try:
        export_synthetic(a.out, a.size, a.identities, a.per_identity, a.seed, progress=True)
    except (ValueError, OSError) as e:
        fail(PROG, e)


if __name__ == "__main__":
    main()
