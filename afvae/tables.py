"""Result files: JSON of headline numbers, CSV, and Markdown / LaTeX tables, all written atomically."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from afvae.atomic import write_text


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, tensors and numpy scalars become Python numbers."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Atomically write ``data`` as pretty JSON (NaN -> null)."""
    return write_text(path, json.dumps(_clean(data), indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, df: pd.DataFrame) -> Path:
    """Atomically write a DataFrame as CSV."""
    return write_text(path, df.to_csv(index=False))


def _cell(v: Any) -> str:
    """One table cell: 4 significant digits for floats, 'n/a' for missing values."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub pipe table of ``df`` (without pandas' optional ``tabulate`` dependency)."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, columns: Sequence[str] | None = None,
                note: str | None = None) -> dict[str, Path]:
    """Write ``name.csv`` (every field), ``name.md`` and ``name.tex`` (the ``columns`` present) atomically.

    ``note``: a line that ends the .md and .tex (e.g. why some columns are empty).
    """
    out = Path(out_dir)
    table = df if columns is None else df[[c for c in columns if c in df]]
    md = to_markdown(table) + (f"\n{note}\n" if note else "")
    tex = table.to_latex(index=False, escape=True, na_rep="n/a", float_format="%.4g")
    tex += f"% {note}\n" if note else ""
    return {"csv": write_text(out / f"{name}.csv", df.to_csv(index=False)),
            "md": write_text(out / f"{name}.md", md),
            "tex": write_text(out / f"{name}.tex", tex)}
