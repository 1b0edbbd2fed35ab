"""Run folders: the metrics log read back after an interruption; one training per folder."""
import fcntl
import json
import logging
import os
import time

import pytest

from afvae.checkpoint import read_history
from afvae.train import train


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


def test_a_run_folder_another_training_holds_is_refused(tiny_cfg, tmp_path):
    with open(tmp_path / "train.lock", "w") as f:  # another training, PID 4242, holds the folder
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("4242\n")
        f.flush()
        with pytest.raises(ValueError, match="in use by another training [(]PID 4242[)]"):
            train(tiny_cfg, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.lock"]  # nothing written


def test_the_lock_holds_the_pid_and_goes_with_the_training(tmp_path):
    from afvae.checkpoint import lock_run

    with lock_run(tmp_path):
        assert (tmp_path / "train.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(ValueError, match=f"PID {os.getpid()}"):
            with lock_run(tmp_path):
                pass
    with lock_run(tmp_path):  # released when the first training ended
        pass


def test_a_cached_training_waits_for_the_process_training_it_then_reads_its_run(tiny_cfg, tmp_path, capsys,
                                                                                 monkeypatch):
    """``make paper``: a notebook needing a run that a pool worker is training (or the reverse) waits for it."""
    import shutil
    import threading

    from afvae import experiment
    from afvae.checkpoint import lock_run, run_dir

    done = tmp_path / "done"
    train(tiny_cfg, done, progress=False)
    out, holding = run_dir(tiny_cfg, tmp_path / "runs"), threading.Event()

    def other_process() -> None:  # holds the folder's lock (another file handle: as another process would)
        with lock_run(out):
            holding.set()
            time.sleep(0.5)
            for name in ("checkpoint.pt", "config.json", "metrics.jsonl"):
                shutil.copy(done / name, out / name)

    calls = []
    real_train = experiment.train
    monkeypatch.setattr(experiment, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    holder = threading.Thread(target=other_process)
    holder.start()
    holding.wait()
    assert experiment.train_cached(tiny_cfg, tmp_path / "runs", progress=False) == out
    holder.join()
    assert calls == [1]  # refused once (the lock), then read the other's finished run: no training of its own
    assert f"{out.name}: waiting for the training in process {os.getpid()} to end" in capsys.readouterr().out
