"""The client version end to end (UPSTREAM.md §2): Google refuses an old one and
the user is told what to set; no account pays for it; the updater manifest
names a newer one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon, base_config, free_port, pooled_daemon
from tests.fakes.google import FakeGoogle, Reply

EMAIL = "version@example.com"


class _Manifest(BaseHTTPRequestHandler):
    body = b"version: 2.31.4\npath: Antigravity-arm64-mac.zip\n"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("content-type", "text/yaml")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def manifest() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Manifest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/manifest/latest-arm64-mac.yml"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def old_client(fake: FakeGoogle) -> Iterator[Daemon]:
    fake.add_account(email=EMAIL)
    with pooled_daemon(fake, [EMAIL], "ag-cv-", upstream={"client_version": "1.15.8"}) as d:
        yield d


def _chat(d: Daemon) -> httpx.Response:
    return httpx.post(
        d.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {d.api_key}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def test_a_refused_version_says_what_to_set_and_spares_the_account(old_client: Daemon) -> None:
    d = old_client
    resp = _chat(d)
    assert resp.status_code >= 500, resp.text
    assert "upstream.client_version" in resp.json()["error"]["message"]
    status = d.ctl("status")
    assert (
        "REFUSED by Google" in status.stdout and "agctl config set upstream.client_version" in status.stdout
    )
    acc = d.ctl_json("accounts", "list")["accounts"][0]
    assert acc["state"] == "active" and not acc["cooldowns"], acc  # not the account's fault
    assert "client version" in d.log() or "client_version" in d.log()

    fixed = d.ctl("config", "set", "upstream.client_version", "2.14.0")
    assert fixed.returncode == 0
    assert _chat(d).status_code == 200
    client = d.status["upstream"]["client"]
    assert client["rejected"] is None and client["user_agent"] == "antigravity/hub/2.14.0 darwin/arm64"


def test_the_updater_manifest_names_a_newer_version(
    fake: FakeGoogle, make_daemon: Any, manifest: str
) -> None:
    d = make_daemon(base_config(fake, free_port(), upstream={"version_check": True, "version_url": manifest}))
    deadline = time.time() + 15
    while time.time() < deadline:
        client = d.status["upstream"]["client"]
        if client["version"] == "2.31.4":
            break
        time.sleep(0.2)
    assert client["version"] == "2.31.4" and client["source"].startswith("updater manifest"), client
    assert client["user_agent"] == "antigravity/hub/2.31.4 darwin/arm64"
    # The answer is kept in the data dir for the next start.
    assert (d.home / "data" / "client_version.json").exists()


def test_a_bad_client_version_is_refused_by_config_set(old_client: Daemon) -> None:
    res = old_client.ctl("config", "set", "upstream.client_version", "2.x")
    assert res.returncode != 0 and "X.Y.Z" in (res.stderr + res.stdout)


REFUSAL = "This version of Antigravity is no longer supported. Please update to receive the latest features!"


def _stream_chat(d: Daemon) -> httpx.Response:
    return httpx.post(
        d.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {d.api_key}"},
        json={"model": "gemini-3-flash", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def test_a_refusal_split_over_stream_events_is_still_a_refusal(fake: FakeGoogle) -> None:
    """§2.2: the refusal came as a normal 200 answer; streamed, its words may
    arrive over several events. It is read whole before the first byte goes
    out, and never reaches the client as the model's text."""
    email = "version-split@example.com"
    fake.add_account(email=email)
    with pooled_daemon(fake, [email], "ag-cvs-") as d:
        fake.script([Reply(answer=REFUSAL, chunks=6, thought=False)], email=email)
        r = _stream_chat(d)
        assert r.status_code >= 500, r.text
        assert "upstream.client_version" in r.text and "Please update" in r.text
        assert d.status["upstream"]["client"]["rejected"]
        # An answer that only starts like one streams as it is.
        lookalike = "This version of Antigravity is the one you run. It works."
        fake.script([Reply(answer=lookalike, chunks=6, thought=False)], email=email)
        r = _stream_chat(d)
        assert r.status_code == 200, r.text
        text = "".join(
            (json.loads(line[5:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for line in r.text.splitlines()
            if line.startswith("data:") and line.strip() != "data: [DONE]"
        )
        assert text == lookalike
        assert d.status["upstream"]["client"]["rejected"] is None
        # A refusal after an event that says nothing yet (a role, no parts) is read too.
        empty = {"candidates": [{"content": {"role": "model", "parts": []}}]}
        half = [
            {"candidates": [{"content": {"role": "model", "parts": [{"text": REFUSAL[:20]}]}}]},
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": REFUSAL[20:]}]}, "finishReason": "STOP"}
                ]
            },
        ]
        fake.script([Reply.raw(half[-1], events=[empty, *half])], email=email)
        r = _stream_chat(d)
        assert r.status_code >= 500 and "upstream.client_version" in r.text, r.text
