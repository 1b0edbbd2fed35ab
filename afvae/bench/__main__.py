"""CLI: ``python -m afvae.bench NAME [--out results/bench]``."""
import argparse

from afvae.bench import available, main

parser = argparse.ArgumentParser(prog="python -m afvae.bench", description=__doc__)
parser.add_argument("name", choices=available(), help="the benchmark to run")
parser.add_argument("--out", default="results/bench", help="folder for NAME.json")
args = parser.parse_args()
main(args.name, args.out)
