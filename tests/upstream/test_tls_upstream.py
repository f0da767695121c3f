"""The real upstream is https: the daemon against a fake Google that serves
TLS with a certificate from a test CA, trusted through SSL_CERT_FILE (the
system trust store's override). Token refresh, onboarding and the model
calls (all through daemon.upstream.http) cross TLS."""

from __future__ import annotations

from pathlib import Path

import openai
import trustme

from tests.conftest import CLIENT_SECRET, pooled_daemon
from tests.fakes.google import FakeGoogle, Reply


def test_the_daemon_serves_over_an_https_upstream(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    email = "tls-user@example.com"
    with FakeGoogle(client_secret=CLIENT_SECRET, tls_cert=str(cert)) as fake:
        assert fake.endpoint.startswith("https://")
        fake.add_account(email=email)
        with pooled_daemon(fake, [email], "ag-tls-", env={"SSL_CERT_FILE": str(cafile)}) as d:
            client = openai.OpenAI(base_url=d.base_url + "/v1", api_key=d.api_key, max_retries=0)
            fake.script([Reply.text("over tls")])
            r = client.chat.completions.create(
                model="gemini-3-flash", messages=[{"role": "user", "content": "hi"}]
            )
            assert r.choices[0].message.content == "over tls"
            fake.script([Reply.text("streamed over tls", chunks=3)])
            stream = client.chat.completions.create(
                model="gemini-3-flash", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "streamed over tls"
        methods = [c.method for c in fake.calls]
        assert "generateContent" in methods and "streamGenerateContent" in methods
