"""What every agctl command gets: its parsed arguments, the admin client
(made on first use) and the output mode (text or ``--json``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ctl.client import AdminClient


class Ctx:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json = bool(args.json)
        self._client: AdminClient | None = None

    @property
    def client(self) -> AdminClient:
        if self._client is None:
            from daemon.paths import find_socket

            sock = Path(self.args.socket) if self.args.socket else find_socket()
            self._client = AdminClient(sock)
        return self._client

    def out(self, data: Any, text: str | None = None) -> None:
        if self.json:
            print(json.dumps(data, indent=2, default=str))
        elif text is not None:
            print(text)
