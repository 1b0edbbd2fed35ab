"""The answers file of a human study: one CSV row per answered trial, crash-safe.

Writing never rewrites earlier rows: the header is created atomically (written to a temporary file, synced,
then hard-linked into place, so the file either does not exist or starts with a complete header), and each
answer is one ``os.write`` of a complete line to a descriptor opened with ``O_APPEND``, followed by ``fsync``,
under a lock. The server acknowledges an answer only after that ``fsync``, so an acknowledged answer survives
a crash or a closed browser. The only damage a crash can leave is an incomplete last line (a write cut short):
readers ignore it with a warning, and :class:`AnswerLog` cuts it off on open so that the next row starts on a
line of its own. The participant whose answer was cut is simply shown that trial again.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = ("time", "participant", "trial", "kind", "pair", "shown", "left", "right", "answer", "truth",
           "winner", "loser", "rt_ms")
HEADER = ",".join(COLUMNS) + "\n"
PARTICIPANT = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def check_participant(participant: str) -> str:
    """The participant id if it is 1-40 letters, digits, ``_``, ``.`` or ``-``; ValueError otherwise."""
    if not isinstance(participant, str) or not PARTICIPANT.match(participant):
        raise ValueError(f"participant id {participant!r} must be 1-40 letters, digits, '_', '.' or '-'")
    return participant


def format_row(row: Mapping[str, Any]) -> str:
    """One complete CSV line (with its newline) of the ``COLUMNS`` of ``row``; no field may hold a newline."""
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"answer row lacks {missing}")
    values = ["" if row[c] is None else str(row[c]) for c in COLUMNS]
    if any("\n" in v or "\r" in v for v in values):
        raise ValueError("answer fields must not contain line breaks")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _create_with_header(path: Path) -> None:
    """Create ``path`` holding only the header, atomically; leave an existing file alone."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, HEADER.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another writer created it first: never clobber answers
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_partial_tail(path: Path) -> bytes:
    """Truncate an incomplete last line (no newline) left by a crash; returns the complete lines kept."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return data
    keep = data.rfind(b"\n") + 1
    if keep == 0:
        raise ValueError(f"{path}: the header line is incomplete; delete the file if it holds no answers")
    log.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted write: %r",
                path, len(data) - keep, data[keep:keep + 80])
    os.truncate(path, keep)
    return data[:keep]


class AnswerLog:
    """Append-only answers CSV: ``append(row)`` writes and syncs one line, thread-safe within a process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if not self.path.exists():
            _create_with_header(self.path)
        first = _cut_partial_tail(self.path).split(b"\n", 1)[0].decode() + "\n"
        if first != HEADER:
            raise ValueError(f"{self.path}: header {first.strip()!r} is not the answers header {HEADER.strip()!r}")

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one answer as a complete line and fsync before returning."""
        line = format_row(row).encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)


def read_answers(path: str | Path) -> pd.DataFrame:
    """The answers of ``path`` as a DataFrame of ``COLUMNS`` (strings; ``rt_ms`` numeric).

    An incomplete last line is ignored with a warning; any other malformed line raises ValueError naming
    its line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no answers yet (run `python -m afvae.study serve` first)")
    text = path.read_text()
    lines = text.split("\n")
    if lines and lines[-1]:
        log.warning("%s: ignoring an incomplete last line %d (an interrupted write)", path, len(lines))
    lines = lines[:-1]  # the empty string after the final newline, or the incomplete line
    if not lines or lines[0] + "\n" != HEADER:
        raise ValueError(f"{path}, line 1: expected the header {HEADER.strip()!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = next(csv.reader([line]), [])
        if len(fields) != len(COLUMNS):
            raise ValueError(f"{path}, line {number}: {len(fields)} fields instead of {len(COLUMNS)}: {line[:80]!r}")
        rows.append(fields)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["rt_ms"] = pd.to_numeric(df["rt_ms"], errors="coerce")
    return df
