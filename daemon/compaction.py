"""Sealing of compaction summaries (Codex's remote compaction, issue 24).

The gateway answers a compaction request with one ``{"type": "compaction",
"encrypted_content": ...}`` item and gets that item back on later turns.
Its content is the model's summary of the earlier turns, sealed here so
that only this gateway can read it and nobody can alter it unseen:

    blob = base64url(version byte | 12-byte nonce | AES-256-GCM(summary JSON))

The version byte and a fixed label are the associated data, so a blob of
another version or purpose never opens. The 256-bit key is made on first
use and kept in the data dir (``compaction.key``, 0600, written atomically)
so that items survive a restart. Losing the key only loses the ability to
open earlier items: the caller answers those with a 400 that says so.

Pure crypto and one small file; the translation (``daemon.protocols``) gets
``seal`` / ``open`` as callables and does no I/O itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from daemon.errors import InternalError
from daemon.fsutil import atomic_write

VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_LABEL = b"antigravity compaction summary"


class Sealer:
    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._aead: AESGCM | None = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._load_or_create())
        return self._aead

    def _load_or_create(self) -> bytes:
        try:
            key = self.key_file.read_bytes()
        except FileNotFoundError:
            key = os.urandom(KEY_BYTES)
            atomic_write(self.key_file, key)
            return key
        if len(key) != KEY_BYTES:
            raise InternalError(
                f"the compaction key file {self.key_file} is damaged (it must hold {KEY_BYTES} bytes); "
                "delete it and a new one is made (compaction items sealed with the old key then "
                "stop opening: their conversations must start afresh)"
            )
        return key

    def seal(self, summary: str) -> str:
        """An opaque, authenticated blob holding ``summary``."""
        nonce = os.urandom(NONCE_BYTES)
        head = bytes([VERSION])
        plain = json.dumps({"summary": summary, "sealed_at": int(time.time())}).encode()
        sealed = self._cipher().encrypt(nonce, plain, head + _LABEL)
        return base64.urlsafe_b64encode(head + nonce + sealed).decode()

    def open(self, blob: str) -> str | None:
        """The summary in a blob this gateway sealed; None for anything else
        (another key, another version, altered, not base64)."""
        if not isinstance(blob, str):
            return None
        try:
            raw = base64.urlsafe_b64decode(blob.encode())
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= 1 + NONCE_BYTES or raw[0] != VERSION:
            return None
        head, nonce, sealed = raw[:1], raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :]
        try:
            plain = self._cipher().decrypt(nonce, sealed, head + _LABEL)
            data = json.loads(plain)
        except (InvalidTag, ValueError):
            return None
        summary = data.get("summary") if isinstance(data, dict) else None
        return summary if isinstance(summary, str) else None
