"""The study's web server: one static page and a small JSON API, standard library only, on localhost.

Routes (``P`` is the participant id):

* ``GET /`` — the page (``page.html``, no external assets);
* ``GET /api/state?p=P`` — progress and the next unanswered trial of P (``trial`` is null when done); the
  first one for P sets P's token cookie (``afvae.study.tokens``), which every later request for P needs;
* ``POST /api/answer`` — JSON ``{"participant", "trial", "answer", "rt_ms"}``; the row is appended to
  ``answers.csv`` and synced before the reply (the next state), so a closed browser loses nothing and a
  reload resumes at the first unanswered trial; a repeated answer to the same trial is refused (409);
* ``GET /img/TRIAL/SLOT?p=P`` — a trial's image by slot (``image``; ``source``, ``target``, ``left``,
  ``right``), so the page never sees file names that would give away the method.

Every request must name this server in ``Host`` (421 otherwise: no DNS rebinding), answers must be
same-origin JSON (403 for a foreign ``Origin`` or ``Sec-Fetch-Site``, 415 for other content types), and
every response carries ``X-Content-Type-Options: nosniff`` and a CSP that allows only the page's own
inline script and style and no framing. A request whose body does not arrive within ``request_timeout``
seconds gets a 408; the listen backlog holds bursts of hundreds of answers.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import math
import re
import socket
import sys
import threading
from datetime import datetime, timezone
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

from afvae.study.answers import AnswerLog, check_participant, read_answers
from afvae.study.design import Study, load_study, participant_order
from afvae.study.tokens import ParticipantTokens

log = logging.getLogger(__name__)
MAX_BODY = 10_000
MAX_RT_MS = 86_400_000  # a day; anything longer is not a reaction time
REQUEST_TIMEOUT_S = 10.0
BACKLOG = 1024  # listen queue: a burst of simultaneous answers must not be reset (the default is 5)
LOOPBACK = ("127.0.0.1", "::1", "localhost")
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
        self.tokens = ParticipantTokens(self.log.path.with_name(f"{self.log.path.stem}.tokens.json"))
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
        """Record one answer (appended and synced) and return the participant's next state.

        ``rt_ms``: None, or the reaction time in milliseconds, a finite number in [0, MAX_RT_MS].
        """
        check_participant(participant)
        t = self.study.trials.get(trial)
        if t is None:
            raise BadRequest(f"no trial {trial!r} in study {self.study.name!r}")
        if answer not in ANSWERS[t["kind"]]:
            raise BadRequest(f"answer to a {t['kind']} trial must be one of {ANSWERS[t['kind']]}, got {answer!r}")
        rt_ms = check_rt(rt_ms)
        with self._lock:
            if trial in self.answered.get(participant, set()):
                raise BadRequest(f"{participant} already answered trial {trial}", HTTPStatus.CONFLICT)
            self.log.append(self._row(participant, t, answer, rt_ms))
            self.answered.setdefault(participant, set()).add(trial)
        return self.state(participant)

    def _row(self, participant: str, t: dict[str, Any], answer: str, rt_ms: Any) -> dict[str, Any]:
        row = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "participant": participant,
               "trial": t["id"], "kind": t["kind"], "pair": t["pair"], "answer": answer,
               "rt_ms": "" if rt_ms is None else rt_ms}
        if t["kind"] == "fool":
            return row | {"shown": t["method"], "left": "", "right": "", "truth": t["truth"], "winner": "",
                          "loser": ""}
        left, right = self.sides(participant, t["id"])
        winner, loser = (left, right) if answer == "left" else (right, left)
        return row | {"shown": "|".join(t["methods"]), "left": left, "right": right, "truth": "",
                      "winner": winner, "loser": loser}


def check_rt(rt_ms: Any) -> int | None:
    """A reaction time as recorded: None, or a finite number of milliseconds in [0, MAX_RT_MS] -> int."""
    if rt_ms is None:
        return None
    if isinstance(rt_ms, bool) or not isinstance(rt_ms, (int, float)) or not math.isfinite(rt_ms) \
            or not 0 <= rt_ms <= MAX_RT_MS:
        raise BadRequest(f"rt_ms must be a number of milliseconds in [0, {MAX_RT_MS}] or null, got {rt_ms!r}")
    return int(round(rt_ms))


def page_html() -> bytes:
    """The study page (static HTML with inline CSS and JS)."""
    return resources.files("afvae.study").joinpath("page.html").read_bytes()


def content_security_policy(page: bytes) -> str:
    """A CSP that runs only the page's own inline ``<script>`` and ``<style>`` (by their SHA-256) and forbids
    framing, plugins and every other origin."""
    def sources(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>".encode(), page, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'" for b in blocks)

    return (f"default-src 'none'; script-src {sources('script')}; style-src {sources('style')}; img-src 'self'; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Cross-Origin-Resource-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"}


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body -> its JSON object; BadRequest for anything else (NaN / Infinity, too deep, not UTF-8)."""
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest("JSON nested too deeply") from None
    except ValueError as e:
        raise BadRequest(f"body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def cookie_name(participant: str) -> str:
    """The token cookie of a participant (ids are cookie-name safe: letters, digits, ``_ . -``)."""
    return f"afvae_study_{participant}"


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's ``recorder`` (a StudyRecorder), after the Host, origin and token checks."""

    server: "StudyHTTPServer"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # socket timeout: a body that never comes ends in a 408
        self._cookie: str | None = None
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", self.server.csp)
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        if self._cookie:
            self.send_header("Set-Cookie", self._cookie)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _guarded(self, route: Any) -> None:
        try:
            self._check_host()
            route()
        except BadRequest as e:
            self._json({"error": str(e)}, e.status)
        except ValueError as e:  # a bad participant id
            self._json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
        except TimeoutError:
            self.close_connection = True
            self._json({"error": f"the request body did not arrive within {self.server.request_timeout:g} s"},
                       HTTPStatus.REQUEST_TIMEOUT)
        except Exception:  # never drop a connection without an answer
            log.exception("study server: %s %s failed", self.command, self.path)
            self._json({"error": "internal error (see the server's log)"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guarded(self._post)

    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").lower()
        if ":" not in host.rsplit("]", 1)[-1]:
            host += ":80"
        if host not in self.server.allowed_hosts:
            raise BadRequest(f"Host {self.headers.get('Host')!r} is not this server", HTTPStatus.MISDIRECTED_REQUEST)

    def _check_same_origin_json(self) -> None:
        if self.headers.get_content_type() != "application/json":
            raise BadRequest("answers must be sent as application/json", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() not in self.server.allowed_origins:
            raise BadRequest(f"cross-origin request from {origin!r} refused", HTTPStatus.FORBIDDEN)
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise BadRequest("cross-site request refused", HTTPStatus.FORBIDDEN)

    def _authorise(self, participant: str, first_page: bool = False) -> str:
        """The participant, if this request carries their token; a new token on their first page."""
        tokens = self.server.recorder.tokens
        cookie = SimpleCookie(self.headers.get("Cookie") or "").get(cookie_name(check_participant(participant)))
        if cookie is not None and tokens.check(participant, cookie.value):
            return participant
        token = tokens.issue(participant) if first_page else None
        if token is None:
            raise BadRequest(f"participant {participant!r} is taken by another browser: choose another name",
                             HTTPStatus.FORBIDDEN)
        self._cookie = (f"{cookie_name(participant)}={token}; Path=/; Max-Age=31536000; HttpOnly; "
                        "SameSite=Strict")
        return participant

    def _get(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page_html(), "text/html; charset=utf-8")
        elif url.path == "/api/state":
            self._json(self.server.recorder.state(self._authorise(query.get("p", ""), first_page=True)))
        elif len(parts) == 3 and parts[0] == "img":
            path = self.server.recorder.image(parts[1], parts[2], self._authorise(query.get("p", "")))
            self._send(HTTPStatus.OK, path.read_bytes(), "image/png", cache="private, max-age=3600")
        else:
            raise BadRequest(f"no route {url.path}", HTTPStatus.NOT_FOUND)

    def _post(self) -> None:
        if urlsplit(self.path).path != "/api/answer":
            raise BadRequest(f"no route {self.path}", HTTPStatus.NOT_FOUND)
        self._check_same_origin_json()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise BadRequest(f"body must be 1-{MAX_BODY} bytes of JSON")
        body = parse_json(self.rfile.read(length))
        participant = self._authorise(str(body.get("participant", "")))
        self._json(self.server.recorder.answer(participant, str(body.get("trial", "")), str(body.get("answer", "")),
                                              body.get("rt_ms")))


def allowed_hosts(host: str, port: int, extra: tuple[str, ...] = ()) -> set[str]:
    """``Host`` header values (``name:port``, lower case) that name a server bound to (host, port).

    Loopback binds answer to the loopback names; a wildcard bind (0.0.0.0, ::) also to this machine's name,
    fully qualified name and addresses; ``extra``: more names (e.g. a name participants use for it).
    """
    names = {host, *extra}
    if host in LOOPBACK or host in ("0.0.0.0", "::", ""):
        names |= set(LOOPBACK)
    if host in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname(), socket.getfqdn()}
        with contextlib.suppress(OSError):
            names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
    return {f"[{n}]:{port}".lower() if ":" in n else f"{n}:{port}".lower() for n in names if n}


class StudyHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the StudyRecorder its handlers use, and what they check requests by."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], recorder: StudyRecorder, *,
                 request_timeout: float = REQUEST_TIMEOUT_S, extra_hosts: tuple[str, ...] = ()):
        super().__init__(address, Handler)
        self.recorder, self.request_timeout = recorder, request_timeout
        self.allowed_hosts = allowed_hosts(address[0], self.server_address[1], extra_hosts)
        self.allowed_origins = {f"http://{h}" for h in self.allowed_hosts}
        self.csp = content_security_policy(page_html())

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("study server: connection from %s ended with %r", client_address[0], sys.exc_info()[1])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(study_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                answers: str | Path | None = None, request_timeout: float = REQUEST_TIMEOUT_S,
                extra_hosts: tuple[str, ...] = ()) -> StudyHTTPServer:
    """A server for the study at ``study_dir`` (port 0: any free port); answers default to STUDY/answers.csv.

    Listening anywhere but on loopback is logged as a warning: other machines can then open the page.
    """
    server = StudyHTTPServer((host, port), StudyRecorder(load_study(study_dir), answers),
                             request_timeout=request_timeout, extra_hosts=extra_hosts)
    if host not in LOOPBACK:
        log.warning("the study server listens on %s:%d, which other machines on the network can reach: anyone "
                    "there can open the page and answer under a new name. Use --host 127.0.0.1 unless the "
                    "participants sit at other machines.", host, server.server_address[1])
    return server


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
