"""The study's web server: one static page and a small JSON API, standard library only, on localhost.

Routes (``P`` is the participant id):

* ``GET /`` — the page (``page.html``, no external assets);
* ``GET /api/state?p=P`` — progress and the next unanswered trial of P (``trial`` is null when done);
* ``POST /api/answer`` — JSON ``{"participant", "trial", "answer", "rt_ms"}``; the row is appended to
  ``answers.csv`` and synced before the reply (the next state), so a closed browser loses nothing and a
  reload resumes at the first unanswered trial; a repeated answer to the same trial is refused (409);
* ``GET /img/TRIAL/SLOT?p=P`` — a trial's image by slot (``image``; ``source``, ``target``, ``left``,
  ``right``), so the page never sees file names that would give away the method.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

from afvae.study.answers import AnswerLog, check_participant, read_answers
from afvae.study.design import Study, load_study, participant_order

log = logging.getLogger(__name__)
MAX_BODY = 10_000
ANSWERS = {"fool": ("real", "generated"), "pair": ("left", "right")}


class BadRequest(ValueError):
    """A request the API refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class StudyRecorder:
    """The state behind the API: the study, its answers log, and who has answered what."""

    def __init__(self, study: Study, answers_path: str | Path | None = None):
        self.study = study
        self.log = AnswerLog(answers_path or study.answers_path)
        self._lock = threading.Lock()
        self.answered: dict[str, set[str]] = {}
        for p, t in read_answers(self.log.path)[["participant", "trial"]].itertuples(index=False):
            self.answered.setdefault(p, set()).add(t)
        self._orders: dict[str, dict[str, bool]] = {}

    def order(self, participant: str) -> dict[str, bool]:
        """Trial ids in ``participant``'s order -> whether a pair trial's sides are swapped."""
        if participant not in self._orders:
            self._orders[participant] = dict(participant_order(self.study, check_participant(participant)))
        return self._orders[participant]

    def sides(self, participant: str, trial: str) -> tuple[str, str]:
        """(left, right) methods of a pair trial as ``participant`` sees it."""
        swap = self.order(participant)[trial]
        a, b = self.study.trials[trial]["methods"]
        return (b, a) if swap else (a, b)

    def state(self, participant: str) -> dict[str, Any]:
        """Progress of ``participant`` and the next trial to show (None when every trial is answered)."""
        order, done = self.order(participant), self.answered.get(participant, set())
        todo = [t for t in order if t not in done]
        trial = self._display(participant, todo[0]) if todo else None
        return {"participant": participant, "done": len(order) - len(todo), "total": len(order),
                "study": self.study.name, "trial": trial}

    def _display(self, participant: str, trial: str) -> dict[str, Any]:
        kind = self.study.trials[trial]["kind"]
        url = lambda slot: f"/img/{trial}/{slot}?p={participant}"  # noqa: E731
        if kind == "fool":
            return {"id": trial, "kind": kind, "image": url("image")}
        return {"id": trial, "kind": kind, "source": url("source"), "target": url("target"),
                "left": url("left"), "right": url("right")}

    def image(self, trial: str, slot: str, participant: str) -> Path:
        """The file shown in ``slot`` of ``trial`` to ``participant``."""
        t = self.study.trials.get(trial)
        if t is None:
            raise BadRequest(f"no trial {trial!r}", HTTPStatus.NOT_FOUND)
        if t["kind"] == "fool" and slot == "image":
            rel = t["image"]
        elif t["kind"] == "pair" and slot in ("source", "target"):
            rel = t[slot]
        elif t["kind"] == "pair" and slot in ("left", "right"):
            method = self.sides(check_participant(participant), trial)[slot == "right"]
            rel = t["images"][t["methods"].index(method)]
        else:
            raise BadRequest(f"trial {trial} has no image {slot!r}", HTTPStatus.NOT_FOUND)
        return self.study.root / rel

    def answer(self, participant: str, trial: str, answer: str, rt_ms: Any = None) -> dict[str, Any]:
        """Record one answer (appended and synced) and return the participant's next state."""
        check_participant(participant)
        t = self.study.trials.get(trial)
        if t is None:
            raise BadRequest(f"no trial {trial!r} in study {self.study.name!r}")
        if answer not in ANSWERS[t["kind"]]:
            raise BadRequest(f"answer to a {t['kind']} trial must be one of {ANSWERS[t['kind']]}, got {answer!r}")
        with self._lock:
            if trial in self.answered.get(participant, set()):
                raise BadRequest(f"{participant} already answered trial {trial}", HTTPStatus.CONFLICT)
            self.log.append(self._row(participant, t, answer, rt_ms))
            self.answered.setdefault(participant, set()).add(trial)
        return self.state(participant)

    def _row(self, participant: str, t: dict[str, Any], answer: str, rt_ms: Any) -> dict[str, Any]:
        row = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "participant": participant,
               "trial": t["id"], "kind": t["kind"], "pair": t["pair"], "answer": answer,
               "rt_ms": int(rt_ms) if isinstance(rt_ms, (int, float)) and rt_ms >= 0 else ""}
        if t["kind"] == "fool":
            return row | {"shown": t["method"], "left": "", "right": "", "truth": t["truth"], "winner": "",
                          "loser": ""}
        left, right = self.sides(participant, t["id"])
        winner, loser = (left, right) if answer == "left" else (right, left)
        return row | {"shown": "|".join(t["methods"]), "left": left, "right": right, "truth": "",
                      "winner": winner, "loser": loser}


def page_html() -> bytes:
    """The study page (static HTML with inline CSS and JS)."""
    return resources.files("afvae.study").joinpath("page.html").read_bytes()


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's ``recorder`` (a StudyRecorder)."""

    server: "StudyHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _guarded(self, route: Any) -> None:
        try:
            route()
        except BadRequest as e:
            self._json({"error": str(e)}, e.status)
        except ValueError as e:  # a bad participant id, malformed JSON
            self._json({"error": str(e)}, HTTPStatus.BAD_REQUEST)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guarded(self._post)

    def _get(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page_html(), "text/html; charset=utf-8")
        elif url.path == "/api/state":
            self._json(self.server.recorder.state(check_participant(query.get("p", ""))))
        elif len(parts) == 3 and parts[0] == "img":
            path = self.server.recorder.image(parts[1], parts[2], query.get("p", ""))
            self._send(HTTPStatus.OK, path.read_bytes(), "image/png", cache="private, max-age=3600")
        else:
            raise BadRequest(f"no route {url.path}", HTTPStatus.NOT_FOUND)

    def _post(self) -> None:
        if urlsplit(self.path).path != "/api/answer":
            raise BadRequest(f"no route {self.path}", HTTPStatus.NOT_FOUND)
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise BadRequest(f"body must be 1-{MAX_BODY} bytes of JSON")
        body = json.loads(self.rfile.read(length))
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        self._json(self.server.recorder.answer(str(body.get("participant", "")), str(body.get("trial", "")),
                                              str(body.get("answer", "")), body.get("rt_ms")))


class StudyHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the StudyRecorder its handlers use."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorder: StudyRecorder):
        super().__init__(address, Handler)
        self.recorder = recorder

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(study_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                answers: str | Path | None = None) -> StudyHTTPServer:
    """A server for the study at ``study_dir`` (port 0: any free port); answers default to STUDY/answers.csv."""
    return StudyHTTPServer((host, port), StudyRecorder(load_study(study_dir), answers))


@contextlib.contextmanager
def running(study_dir: str | Path, **kwargs: Any) -> Iterator[StudyHTTPServer]:
    """The server of ``make_server`` serving in a background thread for the ``with`` block."""
    server = make_server(study_dir, **{"port": 0, **kwargs})
    thread = threading.Thread(target=server.serve_forever, name="study-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
