"""The human study (Table 2): statistics, the crash-safe answers CSV, the HTTP API and a real headless browser."""
import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats as sps

from afvae.data import synthetic as syn
from afvae.study import answers as ans
from afvae.study.design import REAL, StudyNotFound, load_study, participant_order, write_trials
from afvae.study.report import write_table2
from afvae.study.server import running
from afvae.study.stats import clopper_pearson_interval, fool_rates, simulate_answers, table2, wilson_interval
from afvae.study.stimuli import save_images

RANK = ("good", "mid", "bad")  # the planted ranking of the tiny study's methods


# ---------------------------------------------------------------------------------------------------------
# A tiny study set: synthetic faces as the real images, methods = the same faces under growing noise


@pytest.fixture
def study_dir(tmp_path) -> Path:
    faces = syn.make_faces(32, [0, 1], 2, seed=0, progress=False)  # 4 faces, 2 pairs after the split below
    x = faces.images.float() / 127.5 - 1  # (4, 3, 32, 32)
    real, target = x[:2], x[2:]
    g = torch.Generator().manual_seed(0)
    root = tmp_path / "tiny"
    for name, images in {"source": real, "target": target, "real": real}.items():
        save_images(images, root / "images" / name)
    for noise, name in zip((0.05, 0.3, 0.8), RANK):
        save_images(real + noise * torch.randn(real.shape, generator=g), root / "images" / name)
    write_trials(root)
    return root


def test_saved_images_keep_their_pixels(tmp_path):

    x = torch.linspace(-1, 1, 2 * 3 * 8 * 8).view(2, 3, 8, 8)
    paths = save_images(x, tmp_path)
    back = torch.tensor(np.stack([np.asarray(Image.open(p)) for p in paths])).permute(0, 3, 1, 2)
    assert [p.name for p in paths] == ["0000.png", "0001.png"]
    assert torch.allclose(back.float() / 127.5 - 1, x, atol=1 / 127.5)
    assert back.min() == 0 and back.max() == 255


def _row(**kw):
    base = dict.fromkeys(ans.COLUMNS, "")
    return base | {"time": "2024-01-01T00:00:00", "participant": "p1", "kind": "fool"} | kw


# ---------------------------------------------------------------------------------------------------------
# Statistics


def test_wilson_interval_known_value_and_scipy():
    low, high = wilson_interval(8, 10)  # textbook value: 8 of 10 -> [0.4902, 0.9433]
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    for k, n in [(0, 12), (3, 7), (50, 120), (12, 12)]:
        ref = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)
        ref = sps.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert clopper_pearson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_fool_rate_arithmetic():
    rows = [("full", "real")] * 3 + [("full", "generated")] * 7 + [("no_kl", "real")] * 1 + \
           [("no_kl", "generated")] * 4 + [(REAL, "real")] * 9 + [(REAL, "generated")] * 1
    df = pd.DataFrame([{"kind": "fool", "shown": m, "answer": a} for m, a in rows])
    fr = fool_rates(df).set_index("method")
    assert fr.loc["full", "fool_n"] == 10 and fr.loc["full", "fooled"] == 3
    assert fr.loc["full", "fool_rate"] == pytest.approx(0.3) and fr.loc["no_kl", "fool_rate"] == pytest.approx(0.2)
    assert fr.loc[REAL, "fool_rate"] == pytest.approx(0.9)
    assert fr.loc["full", "fool_low"] < 0.3 < fr.loc["full", "fool_high"]


def test_trueskill_recovers_a_planted_ranking():
    quality = {"a": 0.8, "b": 0.55, "c": 0.3, "d": 0.1}
    sim = simulate_answers(quality, n_fool=300, n_pair=25, seed=3)
    table = table2(sim, methods=quality)
    assert list(table["method"]) == ["a", "b", "c", "d"]  # sorted by TrueSkill mu
    assert (table["ts_sigma"] < 25 / 3).all() and (table["games"] == 75).all()
    for row in table.itertuples():  # the planted fool probability lies inside (or at worst near) the interval
        assert row.fool_low - 0.02 <= quality[row.method] <= row.fool_high + 0.02


# ---------------------------------------------------------------------------------------------------------
# The answers CSV


def test_answers_header_is_written_once_and_checked(tmp_path):
    path = tmp_path / "answers.csv"
    ans.AnswerLog(path).append(_row(trial="t1", answer="real"))
    ans.AnswerLog(path)  # reopening never rewrites
    assert path.read_text().startswith(ans.HEADER) and path.read_text().count("\n") == 2
    bad = tmp_path / "other.csv"
    bad.write_text("a,b,c\n")
    with pytest.raises(ValueError, match="header"):
        ans.AnswerLog(bad)


def test_half_written_line_is_ignored_then_cut_and_earlier_rows_survive(tmp_path, caplog):
    path = tmp_path / "answers.csv"
    log = ans.AnswerLog(path)
    for i in range(3):
        log.append(_row(trial=f"t{i}", answer="real", rt_ms=100 + i))
    before = path.read_bytes()
    with open(path, "ab") as f:  # a crash in the middle of a write
        f.write(ans.format_row(_row(trial="t3", answer="generated")).encode()[:17])
    with caplog.at_level("WARNING"):
        df = ans.read_answers(path)
    assert list(df["trial"]) == ["t0", "t1", "t2"] and "incomplete" in caplog.text
    ans.AnswerLog(path).append(_row(trial="t4", answer="generated"))  # reopen cuts the partial line off
    assert path.read_bytes().startswith(before)
    df = ans.read_answers(path)
    assert list(df["trial"]) == ["t0", "t1", "t2", "t4"] and list(df["rt_ms"][:3]) == [100, 101, 102]


def test_malformed_row_names_its_line(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text(ans.HEADER + ans.format_row(_row(trial="t0")) + "oops,only,three\n"
                    + ans.format_row(_row(trial="t2")))
    with pytest.raises(ValueError, match="line 3"):
        ans.read_answers(path)


def test_concurrent_appends_give_complete_rows(tmp_path):
    log = ans.AnswerLog(tmp_path / "answers.csv")
    threads = [threading.Thread(target=lambda k=k: [log.append(_row(participant=f"p{k}", trial=f"t{i}",
                                                                    answer="x" * 300)) for i in range(50)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    df = ans.read_answers(log.path)
    assert len(df) == 200 and df.groupby("participant")["trial"].nunique().eq(50).all()
    assert (df["answer"].str.len() == 300).all()


# ---------------------------------------------------------------------------------------------------------
# Study sets and the HTTP API (no browser)


def test_missing_study_says_what_to_run(tmp_path):
    with pytest.raises(StudyNotFound, match="afvae.study prepare"):
        load_study(tmp_path / "nothing")
    (tmp_path / "half" / "images" / "source").mkdir(parents=True)
    with pytest.raises(StudyNotFound, match="prepare"):
        write_trials(tmp_path / "half")


def test_trials_and_order(study_dir):
    study = load_study(study_dir)
    kinds = [study.trials[t]["kind"] for t, _ in participant_order(study, "ann")]
    assert kinds == ["fool"] * 8 + ["pair"] * 6  # (3 methods + real) x 2 pairs, then 3 method pairs x 2 pairs
    assert participant_order(study, "ann") == participant_order(study, "ann") != participant_order(study, "bob")
    rebuilt = json.loads(write_trials(study_dir).read_text())  # a rebuild keeps the ids
    assert {t["id"] for t in rebuilt["trials"]} == set(study.trials)


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_api_records_resumes_and_refuses(study_dir):
    study = load_study(study_dir)
    with running(study_dir) as server:
        status, ctype, page = _get(server.url)
        assert status == 200 and b"Which faces are real?" in page and "text/html" in ctype
        state = json.loads(_get(server.url + "api/state?p=ann")[2])
        assert state["done"] == 0 and state["total"] == 14 and state["trial"]["kind"] == "fool"
        trial = state["trial"]
        assert "good" not in json.dumps(trial) and REAL not in trial["image"].split("?")[0]  # no give-aways
        status, ctype, png = _get(server.url + trial["image"].lstrip("/"))
        assert status == 200 and ctype == "image/png" and png[:4] == b"\x89PNG"
        status, nxt = _post(server.url + "api/answer", {"participant": "ann", "trial": trial["id"],
                                                        "answer": "real", "rt_ms": 812})
        assert status == 200 and nxt["done"] == 1 and nxt["trial"]["id"] != trial["id"]
        assert _post(server.url + "api/answer", {"participant": "ann", "trial": trial["id"],
                                                 "answer": "generated"})[0] == 409
        assert _post(server.url + "api/answer", {"participant": "ann", "trial": nxt["trial"]["id"],
                                                 "answer": "left"})[0] == 400
        assert _post(server.url + "api/answer", {"participant": "a b", "trial": trial["id"], "answer": "real"})[0] == 400
        with pytest.raises(urllib.error.HTTPError):
            _get(server.url + "img/nope/image?p=ann")
    rows = ans.read_answers(study_dir / "answers.csv")
    assert len(rows) == 1 and rows.loc[0, "answer"] == "real" and rows.loc[0, "rt_ms"] == 812
    assert rows.loc[0, "shown"] == study.trials[trial["id"]]["method"]
    with running(study_dir) as server:  # a restarted server resumes from the CSV
        assert json.loads(_get(server.url + "api/state?p=ann")[2])["trial"]["id"] == nxt["trial"]["id"]


def _method_shown(study, base_url, src):
    """Which method's file the page was given at ``src`` (found by the bytes the server sends)."""
    data = _get(base_url + src.lstrip("/"))[2]
    found = [p.parent.name for p in (study.root / "images").glob("*/*.png") if p.read_bytes() == data]
    assert len(found) == 1 or set(found) == {"source", REAL}, found  # real images are the sources here
    return REAL if REAL in found else found[0]


def _planted_answer(study, base_url, trial):
    """The answer of an observer who ranks good > mid > bad and takes good and real images for real, judging
    by the images the server actually sends for ``trial`` (a dict of the page's URLs)."""
    if trial["kind"] == "fool":
        return "real" if _method_shown(study, base_url, trial["image"]) in (REAL, "good") else "generated"
    left, right = (_method_shown(study, base_url, trial[side]) for side in ("left", "right"))
    return "left" if RANK.index(left) < RANK.index(right) else "right"


def test_pair_sides_and_table_through_the_api(study_dir, tmp_path):
    study = load_study(study_dir)
    with running(study_dir) as server:
        for p in ("ann", "bob"):
            state = json.loads(_get(server.url + f"api/state?p={p}")[2])
            while state["trial"]:
                answer = _planted_answer(study, server.url, state["trial"])
                state = _post(server.url + "api/answer", {"participant": p, "trial": state["trial"]["id"],
                                                          "answer": answer})[1]
    paths = write_table2(study_dir, tmp_path / "results", tmp_path / "figures")
    table = pd.read_csv(paths["csv"]).set_index("method")
    assert list(table.index) == ["good", "mid", "bad", REAL]
    assert table.loc["good", "fool_rate"] == 1 and table.loc["bad", "fool_rate"] == 0
    assert table.loc["good", "wins"] == 8 and table.loc["bad", "wins"] == 0 and table.loc["mid", "games"] == 8
    assert (table["participants"] == 2).all()
    assert "2 participants" in paths["md"].read_text() and paths["png"].stat().st_size > 5000


# ---------------------------------------------------------------------------------------------------------
# A real headless browser


def _browser_or_skip():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    from afvae.browser import find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium, or set $AFVAE_CHROMIUM)")


@pytest.mark.slow
def test_browser_answers_reload_resume_and_table(study_dir, tmp_path):
    _browser_or_skip()
    from afvae.browser import headless_page
    from afvae.study.browser import wait_ready

    study = load_study(study_dir)
    buttons = {"real": "#btn-real", "generated": "#btn-generated", "left": "#btn-left", "right": "#btn-right"}
    with running(study_dir) as server, headless_page() as page:
        page.goto(server.url)
        page.fill("#participant", "carol")
        page.click("#start")
        clicked = []
        for i in range(14):
            if i == 5:  # the browser closes mid-way: reload (the id comes back from the address bar)
                page.reload()
            trial = wait_ready(page)
            assert trial and trial not in clicked
            if i == 5:
                assert page.inner_text("#progress") == "5 / 14"
            shown = {k: page.get_attribute(f"#{k}", "src") for k in ("fool-image", "pair-left", "pair-right")}
            urls = {"kind": study.trials[trial]["kind"], "image": shown["fool-image"], "left": shown["pair-left"],
                    "right": shown["pair-right"]}
            if i == 8:  # a second tab on the same trial: its late answer is refused and it moves on
                stale = page.context.new_page()
                stale.goto(page.url)
                assert wait_ready(stale) == trial
            page.click(buttons[_planted_answer(study, server.url, urls)])
            clicked.append(trial)
            if i == 8:
                after = wait_ready(page)
                stale.click("#btn-left" if study.trials[trial]["kind"] == "pair" else "#btn-generated")
                stale.wait_for_function(f"document.body.dataset.ready === '{after}'", timeout=10_000)
                assert stale.inner_text("#error") == "" and stale.inner_text("#progress") == "9 / 14"
                stale.close()
        wait_ready(page)
        assert page.is_visible("#done") and page.inner_text("#progress") == "14 / 14"
    rows = ans.read_answers(study_dir / "answers.csv")
    assert list(rows["trial"]) == clicked and (rows["participant"] == "carol").all()
    assert (rows["rt_ms"] >= 0).all()
    table = pd.read_csv(write_table2(study_dir, tmp_path / "r", tmp_path / "f")["csv"]).set_index("method")
    assert list(table.index) == ["good", "mid", "bad", REAL]
    assert table.loc["good", "fool_rate"] == 1 and table.loc["mid", "fool_rate"] == 0
    assert table.loc[REAL, "fool_rate"] == 1 and table.loc["good", "wins"] == 4


@pytest.mark.slow
def test_screenshot_shows_a_comparison(study_dir, tmp_path):
    _browser_or_skip()

    from afvae.study.browser import screenshot

    out = screenshot(study_dir, tmp_path / "page.png", kind="pair")
    img = np.asarray(Image.open(out).convert("L"), dtype=float)
    assert img.shape[0] > 500 and img.shape[1] > 600 and img.std() > 10
    assert not (study_dir / "answers.csv").exists()  # the screenshot never touches the study's answers
    assert os.path.getsize(out) > 20_000


def test_cli_help_and_clear_errors(study_dir, tmp_path, capsys):
    from afvae.study.__main__ import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "workflow" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="afvae.study prepare"):
        main(["serve", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="no answers yet"):
        main(["table", str(study_dir), "--results", str(tmp_path / "r")])
    (study_dir / "answers.csv").write_text(ans.HEADER + "a,b\n")
    with pytest.raises(SystemExit, match="line 2"):
        main(["table", str(study_dir), "--results", str(tmp_path / "r")])


@pytest.mark.slow
def test_prepare_exports_table1_methods_for_the_same_pairs(tmp_path):
    from afvae.study.stimuli import prepare_study

    path = prepare_study(tmp_path / "study" / "s", ["AF-VAE", "StarGAN"], scale="smoke", n=3,
                         results=tmp_path / "results", progress=False)
    images = tmp_path / "study" / "s" / "images"
    assert sorted(p.name for p in images.iterdir()) == ["AF-VAE", "StarGAN", "real", "source", "target"]
    assert all(len(list((images / m).glob("*.png"))) == 3 for m in ("AF-VAE", "StarGAN", "real"))
    outputs = {m: np.asarray(Image.open(images / m / "0000.png"), dtype=float) for m in ("AF-VAE", "StarGAN")}
    assert np.abs(outputs["AF-VAE"] - outputs["StarGAN"]).mean() > 1  # two methods, two different images
    study = load_study(tmp_path / "study" / "s")
    assert sorted(study.methods) == ["AF-VAE", "StarGAN"] and path.name == "trials.json"
