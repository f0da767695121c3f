"""Google OAuth, installed-app flow (UPSTREAM.md "Google OAuth").

Token endpoint calls (both grants), userinfo, and the browser login: PKCE
S256 + a random ``state``, a loopback listener on an ephemeral port for
``/oauth-callback``, and a way in for pasted redirect URLs (``--no-browser``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import msgspec

from daemon.config import SECRET_ENV, Config
from daemon.errors import BadRequest, ConfigError, GatewayError, UpstreamError
from daemon.upstream.http import HttpClient

log = logging.getLogger(__name__)

# UPSTREAM.md §3.1 (the scopes are disputed among peers): what Google's
# tokeninfo shows on a real agy token of the same client, ``aicode`` included
# (said to give the whole model catalog; a token without it still works).
SCOPES = [
    "openid",
    "https://www.googleapis.com/auth/aicode",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/cclog",
    "https://www.googleapis.com/auth/experimentsandconfigs",
]
LOGIN_TIMEOUT = 300.0
CALLBACK_PATH = "/oauth-callback"


class InvalidGrant(GatewayError):
    """The refresh token is dead: the account must be disabled."""

    status = 401
    kind = "invalid_grant"


class TokenSet(msgspec.Struct, kw_only=True):
    access_token: str
    expires_at: float
    refresh_token: str | None = None


def require_secret(cfg: Config) -> str:
    secret = cfg.oauth.secret()
    if not secret:
        raise ConfigError(
            "no OAuth client secret: Google's token endpoint needs the secret of the OAuth "
            f"client {cfg.oauth.client_id[:24]}… and antigravity does not ship it. "
            "If Antigravity or agy is installed here, run `agctl oauth detect` to find it and "
            "save it; otherwise set it with `agctl config set oauth.client_secret SECRET` (or "
            f"the environment variable {SECRET_ENV} for the daemon), or use your own OAuth "
            "client via oauth.client_id.",
            param="oauth.client_secret",
        )
    return secret


def _json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}


async def _token_call(http: HttpClient, cfg: Config, form: dict[str, str]) -> TokenSet:
    form = {**form, "client_id": cfg.oauth.client_id, "client_secret": require_secret(cfg)}
    try:
        resp = await http.post_form(cfg.oauth.token_url, form, {"accept": "application/json"})
    except UpstreamError as exc:
        raise type(exc)(f"cannot reach the token endpoint: {exc.message}") from None
    data = _json(resp.content)
    if resp.status_code != 200:
        code = str(data.get("error", "")) if isinstance(data, dict) else ""
        desc = str(data.get("error_description", "")) if isinstance(data, dict) else ""
        if code == "invalid_grant":
            raise InvalidGrant(f"invalid_grant: {desc or 'the refresh token was revoked or expired'}")
        if code in ("invalid_client", "unauthorized_client"):
            raise ConfigError(
                f"the token endpoint rejected the OAuth client ({code}): check oauth.client_id "
                "and oauth.client_secret"
            )
        detail = ": ".join(x for x in (code, desc) if x)
        raise UpstreamError(
            f"Google's token endpoint answered HTTP {resp.status_code}{f' ({detail})' if detail else ''}; "
            "try again in a moment",
            upstream_status=resp.status_code,
        )
    if not isinstance(data, dict) or not data.get("access_token"):
        raise UpstreamError("token endpoint answered without an access_token")
    return TokenSet(
        access_token=str(data["access_token"]),
        expires_at=time.time() + float(data.get("expires_in") or 3600),
        refresh_token=str(data["refresh_token"]) if data.get("refresh_token") else None,
    )


async def refresh(http: HttpClient, cfg: Config, refresh_token: str) -> TokenSet:
    return await _token_call(http, cfg, {"grant_type": "refresh_token", "refresh_token": refresh_token})


async def exchange_code(
    http: HttpClient, cfg: Config, code: str, redirect_uri: str, verifier: str
) -> TokenSet:
    return await _token_call(
        http,
        cfg,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )


async def userinfo(http: HttpClient, cfg: Config, access_token: str) -> dict[str, Any]:
    try:
        resp = await http.get(cfg.oauth.userinfo_url, {"authorization": f"Bearer {access_token}"})
    except UpstreamError as exc:
        raise type(exc)(f"cannot reach userinfo: {exc.message}") from None
    if resp.status_code != 200:
        raise UpstreamError(f"userinfo answered HTTP {resp.status_code}", upstream_status=resp.status_code)
    data = _json(resp.content)
    if not isinstance(data, dict) or not data.get("email"):
        raise UpstreamError("userinfo answered without an email")
    return data


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Login:
    """One browser login in progress."""

    id: str
    state: str
    verifier: str
    redirect_uri: str
    url: str
    created: float = field(default_factory=time.time)
    result: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    server: asyncio.AbstractServer | None = None

    def public(self) -> dict[str, Any]:
        return {
            "login_id": self.id,
            "url": self.url,
            "redirect_uri": self.redirect_uri,
            "timeout": LOGIN_TIMEOUT,
        }


def build_auth_url(cfg: Config, *, state: str, challenge: str, redirect_uri: str) -> str:
    query = urlencode(
        {
            "client_id": cfg.oauth.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "access_type": "offline",
            "prompt": "consent",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{cfg.oauth.auth_url}?{query}"


def parse_callback(text: str, expected_state: str) -> str:
    """The authorization code from a redirect URL, a query string or a bare code."""
    text = text.strip()
    if not text:
        raise BadRequest("empty redirect URL / code")
    if "://" in text or text.startswith(("/", "?")) or "code=" in text or "error=" in text:
        query = urlparse(text).query if "://" in text or text.startswith("/") else text.lstrip("?")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        if "error" in params:
            err = params["error"]
            if err == "access_denied":
                raise BadRequest("Google login was denied (access_denied): nothing was added")
            raise BadRequest(f"Google login failed: {err}")
        if params.get("state") != expected_state:
            raise BadRequest(
                "the redirect's state does not match this login (a stale or forged redirect): "
                "nothing was added; start again with `agctl accounts add`"
            )
        code = params.get("code")
        if not code:
            raise BadRequest("the redirect URL holds no code")
        return code
    return text


_PAGE = (
    "<!doctype html><meta charset=utf-8><title>antigravity</title>"
    "<body style='font-family:sans-serif;margin:3em'><h2>{title}</h2><p>{text}</p></body>"
)


class LoginManager:
    """Starts logins and their loopback callback listeners."""

    def __init__(self) -> None:
        self.logins: dict[str, Login] = {}

    async def start(self, cfg: Config) -> Login:
        require_secret(cfg)
        self._expire()
        verifier = _b64url(secrets.token_bytes(48))
        challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
        state = secrets.token_urlsafe(24)
        login_id = secrets.token_hex(8)
        holder: dict[str, Login] = {}

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._handle_callback(holder["login"], reader, writer)

        server = await asyncio.start_server(on_conn, host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        redirect_uri = f"http://localhost:{port}{CALLBACK_PATH}"
        login = Login(
            id=login_id,
            state=state,
            verifier=verifier,
            redirect_uri=redirect_uri,
            url=build_auth_url(cfg, state=state, challenge=challenge, redirect_uri=redirect_uri),
            server=server,
        )
        holder["login"] = login
        self.logins[login_id] = login
        return login

    def get(self, login_id: str) -> Login:
        login = self.logins.get(login_id)
        if login is None:
            raise BadRequest("unknown or expired login; start again with `agctl accounts add`")
        return login

    async def _handle_callback(
        self, login: Login, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            target = parts[1] if len(parts) >= 2 else "/"
            if not target.startswith(CALLBACK_PATH):
                await self._reply(writer, 404, "Not found", "This is antigravity's login callback.")
                return
            if login.result.done():
                await self._reply(writer, 200, "Already done", "You can close this tab.")
                return
            try:
                code = parse_callback(target, login.state)
            except BadRequest as exc:
                login.result.set_exception(exc)
                await self._reply(writer, 400, "Login failed", exc.message)
                return
            login.result.set_result({"code": code})
            await self._reply(
                writer,
                200,
                "Signed in",
                "antigravity got the login. You can close this tab and go back to the terminal.",
            )
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, title: str, text: str) -> None:
        import html

        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        head = (
            f"HTTP/1.1 {status} {title}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        writer.write(head + body)
        await writer.drain()

    def submit(self, login_id: str, pasted: str) -> None:
        login = self.get(login_id)
        if login.result.done():
            return
        try:
            code = parse_callback(pasted, login.state)
        except BadRequest as exc:
            login.result.set_exception(exc)
            raise
        login.result.set_result({"code": code})

    async def close(self, login_id: str) -> None:
        login = self.logins.pop(login_id, None)
        if login and login.server:
            login.server.close()
            with contextlib.suppress(Exception):
                await login.server.wait_closed()
        if login and not login.result.done():
            login.result.cancel()

    def _expire(self) -> None:
        now = time.time()
        for lid, login in list(self.logins.items()):
            if now - login.created > LOGIN_TIMEOUT * 2:
                if login.server:
                    login.server.close()
                self.logins.pop(lid, None)
