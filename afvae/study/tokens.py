"""Per-participant tokens of the study server: who may answer as whom.

A participant's first page gets a random token (a cookie); every later request for that participant must
carry it, so nobody else on the machine can read their trials or answer for them (and leave them a 409).
Only the tokens' SHA-256 are kept, in a JSON file beside the answers, rewritten atomically on each new
participant, so a restarted server still recognises each browser.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from pathlib import Path

from afvae.atomic import write_text

log = logging.getLogger(__name__)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ParticipantTokens:
    """participant -> SHA-256 of their token, persisted at ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}
        if self.path.exists():
            try:
                self._hashes = dict(json.loads(self.path.read_text()))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{self.path}: unreadable tokens file ({e}); move it away to start afresh "
                                 f"(every participant then gets a new token on their next page)") from None

    def issue(self, participant: str) -> str | None:
        """A new token for ``participant``, or None when they already have one (then theirs is required)."""
        with self._lock:
            if participant in self._hashes:
                return None
            token = secrets.token_urlsafe(24)
            self._hashes[participant] = _digest(token)
            write_text(self.path, json.dumps(self._hashes, indent=1, sort_keys=True) + "\n")
        log.info("study: new token for participant %s", participant)
        return token

    def check(self, participant: str, token: str) -> bool:
        """Whether ``token`` is ``participant``'s (compared in constant time)."""
        expected = self._hashes.get(participant)
        return expected is not None and hmac.compare_digest(expected, _digest(token))
