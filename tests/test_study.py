"""The human study (Table 2): statistics, the crash-safe answers CSV, the HTTP API and a real headless browser."""
import base64
import hashlib
import http.client
import http.cookiejar
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
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


class Client:
    """One browser: keeps the cookies the server sets, sends the Origin a same-origin page sends."""

    def __init__(self, base_url: str):
        self.base, self.cookies = base_url, {}
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str, headers: dict | None = None):
        req = urllib.request.Request(self.base + path.lstrip("/"), headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def post(self, path: str, body, headers: dict | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "Origin": self.base.rstrip("/")} | (headers or {})
        req = urllib.request.Request(self.base + path.lstrip("/"), data, {k: v for k, v in sent.items() if v})
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def state(self, p: str):
        return json.loads(self.get(f"api/state?p={p}")[2])

    def answer(self, p: str, trial: str, answer: str, **extra):
        return self.post("api/answer", {"participant": p, "trial": trial, "answer": answer, **extra})


def test_http_api_records_resumes_and_refuses(study_dir):
    study = load_study(study_dir)
    with running(study_dir) as server:
        ann = Client(server.url)
        status, headers, page = ann.get("/")
        assert status == 200 and b"Which faces are real?" in page and "text/html" in headers["Content-Type"]
        state = ann.state("ann")
        assert state["done"] == 0 and state["total"] == 14 and state["trial"]["kind"] == "fool"
        trial = state["trial"]
        assert "good" not in json.dumps(trial) and REAL not in trial["image"].split("?")[0]  # no give-aways
        status, headers, png = ann.get(trial["image"])
        assert status == 200 and headers["Content-Type"] == "image/png" and png[:4] == b"\x89PNG"
        status, nxt = ann.answer("ann", trial["id"], "real", rt_ms=812)
        assert status == 200 and nxt["done"] == 1 and nxt["trial"]["id"] != trial["id"]
        assert ann.answer("ann", trial["id"], "generated")[0] == 409
        assert ann.answer("ann", nxt["trial"]["id"], "left")[0] == 400
        assert ann.answer("a b", trial["id"], "real")[0] == 400
        assert ann.get("img/nope/image?p=ann")[0] == 404
    rows = ans.read_answers(study_dir / "answers.csv")
    assert len(rows) == 1 and rows.loc[0, "answer"] == "real" and rows.loc[0, "rt_ms"] == 812
    assert rows.loc[0, "shown"] == study.trials[trial["id"]]["method"]
    with running(study_dir) as server:  # a restarted server resumes from the CSV, and knows ann's browser
        ann.base = server.url
        assert ann.state("ann")["trial"]["id"] == nxt["trial"]["id"]
        assert Client(server.url).get("api/state?p=ann")[0] == 403


def _raw(server, method: str, path: str, headers: dict, body: bytes = b""):
    """One request with exactly these headers (Host included): (status, headers, body)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    if body:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)
    r = conn.getresponse()
    out = r.status, r.headers, r.read()
    conn.close()
    return out


def test_foreign_host_cross_origin_and_non_json_posts_are_refused(study_dir):
    with running(study_dir) as server:
        ann = Client(server.url)
        trial = ann.state("ann")["trial"]
        host = server.url.split("/")[2]
        body = json.dumps({"participant": "ann", "trial": trial["id"], "answer": "real"}).encode()
        auth = {"Cookie": cookie_header(ann)}  # ann's own token: only the origin checks can refuse
        # DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends its own Host
        for method, path in (("GET", "/"), ("GET", "/api/state?p=ann"), ("POST", "/api/answer")):
            status = _raw(server, method, path, {"Host": f"evil.example:{server.server_address[1]}", **auth,
                                                 "Content-Type": "application/json"}, body)[0]
            assert status in (403, 421), (method, path, status)
        # a cross-origin form or fetch: text/plain needs no preflight, a foreign Origin is refused either way
        for headers in ({"Content-Type": "text/plain", "Origin": f"http://{host}"},
                        {"Content-Type": "application/json", "Origin": "http://evil.example"},
                        {"Content-Type": "application/json", "Origin": "null"},
                        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}):
            status = _raw(server, "POST", "/api/answer", {"Host": host, **auth, **headers}, body)[0]
            assert status in (403, 415), (headers, status)
        assert ann.state("ann")["done"] == 0  # none of them was recorded
        assert _raw(server, "POST", "/api/answer", {"Host": host, **auth, "Content-Type": "application/json",
                                                    "Origin": f"http://{host}"}, body)[0] == 200


def test_each_participant_has_a_token_set_on_their_first_page(study_dir):
    with running(study_dir) as server:
        ann, mallory = Client(server.url), Client(server.url)
        status, headers, _ = ann.get("api/state?p=ann")
        cookie = headers["Set-Cookie"]
        assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        trial = ann.state("ann")["trial"]
        assert "Set-Cookie" not in ann.get("api/state?p=ann")[1]  # set once
        # someone else on the machine cannot read, answer or see the images as ann
        assert mallory.get("api/state?p=ann")[0] == 403
        assert mallory.get(trial["image"])[0] == 403
        assert mallory.answer("ann", trial["id"], "generated")[0] == 403
        assert ann.answer("ann", trial["id"], "real")[0] == 200  # ann gets no 409 from mallory's attempt
        assert mallory.state("mallory")["done"] == 0  # mallory has her own
        assert ann.answer("mallory", mallory.state("mallory")["trial"]["id"], "real")[0] == 403
    kept = [p for p in study_dir.iterdir() if "tokens" in p.name]
    assert kept and all(cookie_header(ann).split("=")[1] not in p.read_text() for p in kept)  # hashes only


def cookie_header(client: Client) -> str:
    """The Cookie header the client's browser would send (its one cookie)."""
    jar = next(h.cookiejar for h in client.opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
    (cookie,) = list(jar)
    return f"{cookie.name}={cookie.value}"


def test_security_headers_on_every_response(study_dir):
    with running(study_dir) as server:
        ann = Client(server.url)
        for path in ("/", "api/state?p=ann", "img/nope/image?p=ann"):
            headers = ann.get(path)[1]
            assert headers["X-Content-Type-Options"] == "nosniff", path
            csp = headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
        csp = ann.get("/")[1]["Content-Security-Policy"]
        page = ann.get("/")[2].decode()
        script = page.split("<script>", 1)[1].split("</script>", 1)[0]
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp and "unsafe-inline" not in csp  # only the page's own script runs


def test_non_loopback_host_warns(study_dir, caplog):
    from afvae.study.server import make_server

    with caplog.at_level("WARNING"):
        server = make_server(study_dir, host="0.0.0.0", port=0)
        server.server_close()
    assert "0.0.0.0" in caplog.text and "other machines" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        make_server(study_dir, host="127.0.0.1", port=0).server_close()
    assert caplog.text == ""


@pytest.mark.parametrize("body", [
    b'{"participant": "ann", "trial": "T", "answer": "real", "rt_ms": Infinity}',
    b'{"participant": "ann", "trial": "T", "answer": "real", "rt_ms": NaN}',
    b'{"participant": "ann", "trial": "T", "answer": "real", "rt_ms": -5}',
    b'{"participant": "ann", "trial": "T", "answer": "real", "rt_ms": 1e300}',
    b'{"participant": "ann", "trial": "T", "answer": "real", "rt_ms": "fast"}',
    b'{"participant": "ann", "trial": "T", "answer": "real", "rt_ms": true}',
    b"[" * 9000,
    b"{\"participant\": \"ann\", \"x\": " + b"[" * 4000 + b"]" * 4000 + b"}",
    b"\xff\xfe not utf-8",
])
def test_malformed_answers_get_a_400_and_nothing_is_recorded(study_dir, body):
    with running(study_dir) as server:
        ann = Client(server.url)
        trial = ann.state("ann")["trial"]["id"]
        status, reply = ann.post("api/answer", body.replace(b'"T"', json.dumps(trial).encode()))
        assert status == 400 and reply["error"]
        assert ann.state("ann")["done"] == 0
        assert ann.answer("ann", trial, "real", rt_ms=1500)[0] == 200  # the server is still fine


def test_short_body_times_out_instead_of_holding_a_thread(study_dir):
    with running(study_dir, request_timeout=1.0) as server:
        ann = Client(server.url)
        ann.state("ann")
        host, port = server.server_address[:2]
        threads = threading.active_count()
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(f"POST /api/answer HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: 100\r\n\r\n{{\"a\": 1".encode())  # 8 of the 100 bytes promised
            t0 = time.perf_counter()
            reply = sock.recv(4096)
            assert time.perf_counter() - t0 < 5
        assert reply.startswith(b"HTTP/1.") and b" 408 " in reply.split(b"\r\n")[0]
        time.sleep(0.2)
        assert threading.active_count() <= threads  # the handler thread is gone
        assert ann.state("ann")["done"] == 0


def test_a_burst_of_200_simultaneous_answers_is_served(study_dir):
    with running(study_dir) as server:
        clients = [Client(server.url) for _ in range(200)]
        trials = [c.state(f"p{i}")["trial"]["id"] for i, c in enumerate(clients)]
        start, results = threading.Barrier(200), [None] * 200

        def answer(i):
            start.wait()
            try:
                results[i] = clients[i].answer(f"p{i}", trials[i], "real", rt_ms=i)[0]
            except OSError as e:  # connection reset / refused
                results[i] = type(e).__name__

        threads = [threading.Thread(target=answer, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200] * 200, {r: results.count(r) for r in set(results)}
    rows = ans.read_answers(study_dir / "answers.csv")
    assert len(rows) == 200 and sorted(rows["rt_ms"]) == list(range(200))


def _method_shown(study, browser, src):
    """Which method's file the page was given at ``src`` (found by the bytes the server sends ``browser``)."""
    data = browser.get(src)[2]
    found = [p.parent.name for p in (study.root / "images").glob("*/*.png") if p.read_bytes() == data]
    assert len(found) == 1 or set(found) == {"source", REAL}, found  # real images are the sources here
    return REAL if REAL in found else found[0]


def _planted_answer(study, browser, trial):
    """The answer of an observer who ranks good > mid > bad and takes good and real images for real, judging
    by the images the server actually sends for ``trial`` (a dict of the page's URLs)."""
    if trial["kind"] == "fool":
        return "real" if _method_shown(study, browser, trial["image"]) in (REAL, "good") else "generated"
    left, right = (_method_shown(study, browser, trial[side]) for side in ("left", "right"))
    return "left" if RANK.index(left) < RANK.index(right) else "right"


def test_pair_sides_and_table_through_the_api(study_dir, tmp_path):
    study = load_study(study_dir)
    with running(study_dir) as server:
        for p in ("ann", "bob"):
            browser = Client(server.url)
            state = browser.state(p)
            while state["trial"]:
                answer = _planted_answer(study, browser, state["trial"])
                state = browser.answer(p, state["trial"]["id"], answer)[1]
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


class PageClient:
    """Fetches as the browser page does (its cookies), for ``_method_shown``."""

    def __init__(self, page, base_url: str):
        self.page, self.base = page, base_url

    def get(self, path: str):
        r = self.page.request.get(self.base + path.lstrip("/"))
        return r.status, r.headers, r.body()


@pytest.mark.slow
def test_browser_answers_reload_resume_and_table(study_dir, tmp_path):
    _browser_or_skip()
    from afvae.browser import headless_page
    from afvae.study.browser import wait_ready

    study = load_study(study_dir)
    buttons = {"real": "#btn-real", "generated": "#btn-generated", "left": "#btn-left", "right": "#btn-right"}
    with running(study_dir) as server, headless_page() as page:
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
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
            page.click(buttons[_planted_answer(study, PageClient(page, server.url), urls)])
            clicked.append(trial)
            if i == 8:
                after = wait_ready(page)
                stale.click("#btn-left" if study.trials[trial]["kind"] == "pair" else "#btn-generated")
                stale.locator(f"body[data-ready='{after}']").wait_for(state="attached", timeout=10_000)
                assert stale.inner_text("#error") == "" and stale.inner_text("#progress") == "9 / 14"
                stale.close()
        wait_ready(page)
        assert page.is_visible("#done") and page.inner_text("#progress") == "14 / 14"
        assert not [e for e in errors if "Content Security Policy" in e], errors  # the page runs under its CSP
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
