"""Write Table 2 of a study: ``results/table2_study.csv`` / ``.md`` and ``figures/table2_study.png``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from afvae.atomic import write_text
from afvae.tables import to_markdown, write_csv
from afvae.study.answers import read_answers
from afvae.study.design import load_study
from afvae.study.stats import table2

NAME = "table2_study"


def _interval(row: Any) -> str:
    if row.fool_n == 0:
        return "n/a"
    return f"{100 * row.fool_rate:.1f} % [{100 * row.fool_low:.1f}, {100 * row.fool_high:.1f}]"


def _rating(row: Any) -> str:
    if row.games == 0:  # the real images, or a method never compared: the prior, not a rating
        return "—"
    return f"{row.ts_mu:.2f} ± {row.ts_sigma:.2f}"


def markdown(table: pd.DataFrame, answers: pd.DataFrame, interval: str) -> str:
    """The .md form of Table 2, with a line saying how many participants and answers it rests on."""
    view = pd.DataFrame({
        "method": table["method"],
        "fool rate (95 % CI)": [_interval(r) for r in table.itertuples()],
        "fool trials": table["fool_n"],
        "TrueSkill mu ± sigma": [_rating(r) for r in table.itertuples()],
        "comparisons": table["games"],
        "wins": table["wins"],
    })
    n_fool, n_pair = int((answers["kind"] == "fool").sum()), int((answers["kind"] == "pair").sum())
    people = answers["participant"].nunique()
    note = (f"\n{people} participant{'s' * (people != 1)}, {n_fool} real-or-generated answers, {n_pair} "
            f"pairwise answers. Fool rate: generated images judged real ({interval} interval); the `real` row is "
            f"real images judged real. TrueSkill: one game per pairwise answer, in recorded order.\n")
    return to_markdown(view) + note


def write_table2(study_dir: str | Path, results: str | Path = "results", figures: str | Path = "figures",
                 interval: str = "wilson", answers_path: str | Path | None = None) -> dict[str, Path]:
    """Read a study's answers, compute Table 2 and write its .csv, .md and bar plot (all atomically)."""
    from afvae.plotting import plot_study_table, save_figure  # matplotlib only when a figure is drawn

    study = load_study(study_dir)
    answers = read_answers(answers_path or study.answers_path)
    if answers.empty:
        raise ValueError(f"{answers_path or study.answers_path} holds no answers yet: run the study first")
    unknown = set(answers["trial"]) - set(study.trials)
    if unknown:
        raise ValueError(f"answers name {len(unknown)} trials that are not in {study.root / 'trials.json'}, "
                         f"e.g. {sorted(unknown)[0]}")
    table = table2(answers, study.methods, interval)
    md_path = write_text(Path(results) / f"{NAME}.md", markdown(table, answers, interval))
    return {"csv": write_csv(Path(results) / f"{NAME}.csv", table), "md": md_path,
            "png": save_figure(plot_study_table(table), NAME, figures)}
