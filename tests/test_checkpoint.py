"""Run folders: the metrics log, read back after an interruption."""
import json
import logging

import pytest

from afvae.checkpoint import read_history


def _rows(path, steps):
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps))


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
    _rows(tmp_path / "metrics.jsonl", [1, 2, 3])
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # killed in the middle of a write
    with caplog.at_level(logging.WARNING):
        assert [r["step"] for r in read_history(tmp_path)] == [1, 2, 3]
        assert [r["step"] for r in read_history(tmp_path, upto=2)] == [1, 2]
    assert "metrics.jsonl:4" in caplog.text and "torn" in caplog.text


def test_a_broken_line_inside_the_metrics_is_an_error(tmp_path):
    _rows(tmp_path / "metrics.jsonl", [1, 2])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", lines[1]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not a JSON row"):
        read_history(tmp_path)
