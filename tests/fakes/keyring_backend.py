"""A keyring backend for tests: entries in a JSON file named by $AG_FAKE_KEYRING.

Set it programmatically (``keyring.set_keyring(FileKeyring())``) or, for an
agctl subprocess, with ``PYTHON_KEYRING_BACKEND=tests.fakes.keyring_backend.FileKeyring``
(and the project root on PYTHONPATH). ``AG_FAKE_KEYRING_LOCKED=1`` makes every
read fail as a locked Secret Service collection does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1.0  # type: ignore[assignment]

    def _path(self) -> Path | None:
        name = os.environ.get("AG_FAKE_KEYRING")
        return Path(name) if name else None

    def _load(self) -> dict[str, str]:
        path = self._path()
        if path is None or not path.exists():
            return {}
        data: dict[str, str] = json.loads(path.read_text())
        return data

    def get_password(self, service: str, username: str) -> str | None:
        if os.environ.get("AG_FAKE_KEYRING_LOCKED") == "1":
            raise KeyringLocked("Failed to unlock the collection!")
        return self._load().get(f"{service}:{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        path = self._path()
        assert path is not None, "set AG_FAKE_KEYRING first"
        data = self._load()
        data[f"{service}:{username}"] = password
        path.write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        path = self._path()
        data = self._load()
        if path is None or data.pop(f"{service}:{username}", None) is None:
            raise PasswordDeleteError("no such entry")
        path.write_text(json.dumps(data))
