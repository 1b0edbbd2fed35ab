"""``python -m afvae.study {prepare,trials,serve,table,screenshot}``: the human study of Table 2."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from afvae.study.design import StudyNotFound

WORKFLOW = """\
workflow:
  1. python -m afvae.study prepare --name pilot
       trains (or reuses, from RESULTS/runs) the AF-VAE variants, exports real test images and each
       variant's manipulations of the same source/target pairs to results/study/pilot/, and lists the trials.
       Another method (e.g. a GAN baseline) is a folder results/study/pilot/images/NAME/0000.png ... with one
       output per pair; add it, then run `python -m afvae.study trials results/study/pilot`.
  2. python -m afvae.study serve results/study/pilot
       serves the page on http://127.0.0.1:8000/. Each participant enters a name and answers
       (part 1) real or generated? for single images and (part 2) which of two results is better?
       Every answer is appended to results/study/pilot/answers.csv at once; reloading resumes.
  3. python -m afvae.study table results/study/pilot
       writes Table 2: results/table2_study.{csv,md} (fool rate with a 95 % interval, TrueSkill mu/sigma)
       and figures/table2_study.png.
  python -m afvae.study screenshot results/study/pilot  saves figures/study_page.png (headless Chromium).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m afvae.study", epilog=WORKFLOW,
                                description="A local human study for Table 2: Fool Rate and TrueSkill.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prep = sub.add_parser("prepare", help="export a study set from trained models")
    prep.add_argument("--name", default="pilot", help="study name: the folder OUT/NAME (default pilot)")
    prep.add_argument("--out", default="results/study", help="where study folders go (default results/study)")
    prep.add_argument("--methods", help="comma-separated methods: Table 1's (pix2pixHD, StarGAN, GANimation, AF-VAE; "
                                        "the default) or AF-VAE ablation variants (no_kl, standard_prior, ...)")
    prep.add_argument("--scale", default="default", help="smoke | default | long (the shipped models: nothing to train) | paper")
    prep.add_argument("--data", default="synthetic", help="'synthetic' or a prepared data folder")
    prep.add_argument("--seed", type=int, default=0, help="training seed and pair sampling seed")
    prep.add_argument("--pairs", type=int, default=12, help="manipulation pairs (default 12)")
    prep.add_argument("--results", default="results", help="where trained runs are cached (RESULTS/runs)")
    trials = sub.add_parser("trials", help="rebuild trials.json after adding a method folder")
    trials.add_argument("study", help="study folder, e.g. results/study/pilot")
    serve = sub.add_parser("serve", help="run the study page on localhost")
    serve.add_argument("study", help="study folder, e.g. results/study/pilot")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="another name participants' browsers use for this server (repeatable)")
    table = sub.add_parser("table", help="compute Table 2 from answers.csv")
    table.add_argument("study", help="study folder, e.g. results/study/pilot")
    table.add_argument("--answers", help="answers CSV (default STUDY/answers.csv)")
    table.add_argument("--results", default="results")
    table.add_argument("--figures", default="figures")
    table.add_argument("--interval", default="wilson", choices=["wilson", "clopper-pearson"])
    shot = sub.add_parser("screenshot", help="save a screenshot of the page (headless Chromium)")
    shot.add_argument("study", help="study folder, e.g. results/study/pilot")
    shot.add_argument("--out", default="figures/study_page.png")
    shot.add_argument("--kind", default="pair", choices=["fool", "pair"], help="which part to show")
    return p


def _serve(study: str, host: str, port: int, extra_hosts: tuple[str, ...] = ()) -> None:
    from afvae.study.server import make_server

    server = make_server(study, host=host, port=port, extra_hosts=extra_hosts)
    s = server.recorder.study
    print(f"study {s.name!r}: {len(s.trials)} trials, methods {', '.join(s.methods)}; answers -> "
          f"{server.recorder.log.path}\nopen {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _run(a: argparse.Namespace) -> None:
    if a.command == "prepare":
        from afvae.study.stimuli import DEFAULT_METHODS, prepare_study

        methods = [m for m in a.methods.split(",") if m] if a.methods else DEFAULT_METHODS
        path = prepare_study(Path(a.out) / a.name, methods, scale=a.scale,
                             data=a.data, seed=a.seed, n=a.pairs, results=a.results)
        print(f"study set -> {path.parent} (next: python -m afvae.study serve {path.parent})")
    elif a.command == "trials":
        from afvae.study.design import write_trials

        print(f"trials -> {write_trials(a.study)}")
    elif a.command == "serve":
        _serve(a.study, a.host, a.port, tuple(a.allow_host))
    elif a.command == "table":
        from afvae.study.report import write_table2

        paths = write_table2(a.study, a.results, a.figures, a.interval, a.answers)
        print(paths["md"].read_text() + "\n" + "  ".join(str(p) for p in paths.values()))
    else:
        from afvae.study.browser import screenshot

        print(f"screenshot -> {screenshot(a.study, a.out, kind=a.kind)}")


def main(argv: list[str] | None = None) -> None:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _run(a)
    except (StudyNotFound, FileNotFoundError, ValueError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from e


if __name__ == "__main__":
    main()
