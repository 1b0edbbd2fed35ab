"""Atomic writes: the target is replaced whole or not at all, and no temporary is left behind."""
import os
import stat

import pytest

from afvae.atomic import atomic_path, write_text


def test_write_text_replaces_and_creates_parents(tmp_path):
    path = write_text(tmp_path / "a" / "b.json", "one")
    assert path.read_text() == "one" and write_text(path, "two").read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "fig.png", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            assert tmp.suffix == ".png" and tmp.parent == path.parent  # writers may infer the format
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_file_and_folder_are_synced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(
        "fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or real_replace(a, b))
    write_text(tmp_path / "checkpoint.pt", "weights")
    assert events == ["fsync file", "rename", "fsync folder"]  # the data is on disk before the name points at it


def test_concurrent_writers_get_their_own_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    with atomic_path(path) as a, atomic_path(path) as b:  # two processes saving the same file at once
        assert a != b
        a.write_text("first")
        b.write_text("second")
    assert path.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
