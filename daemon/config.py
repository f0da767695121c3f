"""config.toml: msgspec Structs, load / validate / save, typed `KEY VALUE` sets.

Every key has a default and the file may be absent. Writes are atomic and
0600 (the file holds the proxy key and maybe an OAuth secret and z.ai key).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import msgspec

from daemon.errors import ConfigError
from daemon.fsutil import atomic_write
from daemon.guards import host_entry_problem, key_problem, origin_entry_problem

AuthMode = Literal["off", "strict", "all_except_health", "auto"]
SchedulingMode = Literal["balance", "sticky", "fixed"]
ZaiMode = Literal["off", "exclusive", "pooled", "fallback"]
ClientFamily = Literal["hub", "cli"]
GeminiThinking = Literal["budget", "level"]

ANTIGRAVITY_CLIENT_ID = "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
# Daily first (what the official clients use), prod second; the sandbox host
# is legacy and prod can answer 429 to paid consumer accounts that daily
# serves (UPSTREAM.md §1.1, §1.2).
DEFAULT_ENDPOINTS = [
    "https://daily-cloudcode-pa.googleapis.com",
    "https://cloudcode-pa.googleapis.com",
]
# Defaults of earlier releases, which `save` wrote into every config.toml:
# a file still holding exactly these gets today's defaults (else every
# upgraded install would keep a refused User-Agent and the legacy host).
_OLD_DEFAULT_ENDPOINTS = [
    "https://daily-cloudcode-pa.sandbox.googleapis.com",
    "https://daily-cloudcode-pa.googleapis.com",
    "https://cloudcode-pa.googleapis.com",
]
_OLD_DEFAULT_USER_AGENT = "antigravity/1.15.8 linux/amd64"
SECRET_ENV = "ANTIGRAVITY_OAUTH_CLIENT_SECRET"
_VERSION_RE = re.compile(r"^\d{1,4}\.\d{1,4}\.\d{1,6}$")


def new_api_key() -> str:
    return "sk-" + secrets.token_hex(16)


class ProxyConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    port: int = 8045
    allow_lan_access: bool = False
    auth_mode: AuthMode = "auto"
    api_key: str = ""
    auto_start: bool = True
    request_timeout: int = 300
    upstream_proxy: str = ""
    # Seconds of upstream silence (e.g. long thinking) after which a stream
    # gets a keepalive (Anthropic `ping`, an SSE comment for OpenAI).
    stream_keepalive: float = 10.0


class UpstreamConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    endpoints: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_ENDPOINTS))
    # "" = the built-in default, or a newer one the updater manifest names
    # (daemon.upstream.identity); set it when Google refuses the version.
    client_version: str = ""
    # The User-Agent form: "hub" (Antigravity 2.x desktop) or "cli" (agy).
    client_family: ClientFamily = "hub"
    # Read the current version from the updater manifest in the background.
    version_check: bool = True
    # "" = the family's own manifest URL.
    version_url: str = ""
    # Expert override of the whole User-Agent ("" = derived from the above).
    user_agent: str = ""
    # Gemini 3 thinking on the wire: "budget" (thinkingBudget, integers as the
    # agy CLI sends) or "level" (thinkingLevel strings); UPSTREAM.md §7.1.
    gemini_thinking: GeminiThinking = "budget"
    # Seconds a stream may stay silent (upstream thinking) before it is dropped.
    stream_idle_timeout: int = 300
    connect_timeout: int = 10


class OAuthConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    client_id: str = ANTIGRAVITY_CLIENT_ID
    client_secret: str = ""
    auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"
    userinfo_url: str = "https://www.googleapis.com/oauth2/v2/userinfo"

    def secret(self) -> str:
        return self.client_secret or os.environ.get(SECRET_ENV, "")


class SchedulingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: SchedulingMode = "balance"
    fixed_account: str = ""
    # How many accounts one request may try before the client gets an error.
    max_attempts: int = 4
    # Longest cooldown ever set from a 429 (seconds); the reset time wins if sooner.
    max_cooldown: int = 6 * 3600
    # Cooldown for RATE_LIMIT_EXCEEDED / 429s without a reset time (seconds).
    rate_limit_cooldown: int = 30
    # How long a sticky conversation stays bound to its account (seconds).
    sticky_ttl: int = 3600
    # Background quota refresh interval (seconds); 0 turns it off.
    quota_refresh_interval: int = 600


class ZaiConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    base_url: str = "https://api.z.ai/api/anthropic"
    api_key: str = ""
    dispatch_mode: ZaiMode = "off"
    models: dict[str, str] = msgspec.field(
        default_factory=lambda: {"opus": "glm-4.7", "sonnet": "glm-4.7", "haiku": "glm-4.5-air"}
    )


class MonitorConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    retention_days: int = 30
    max_body_bytes: int = 0
    log_bodies: bool = False


class LimitsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the proxy listener refuses, and what the upstream client takes
    from Google or z.ai (issue 17). Defaults follow nginx, Envoy and uvicorn;
    every refusal names the key that raises its limit."""

    # Request line + header block, bytes (431 past it). Envoy's
    # max_request_headers_kb is 60 KiB, nginx's large_client_header_buffers 4 x 8k.
    max_head_bytes: int = 64 * 1024
    # Header lines per request (431 past it): Envoy's max_headers_count.
    max_headers: int = 100
    # Largest body on the model routes (images make them big); 413 past it.
    # Was proxy.max_body_bytes, which still reads and sets this key.
    max_body_bytes: int = 64 * 1024 * 1024
    # Largest body on every other route (nginx client_max_body_size: 1m).
    max_other_body_bytes: int = 1024 * 1024
    # Seconds for a whole request head to arrive (nginx client_header_timeout 60 s).
    header_timeout: float = 30.0
    # Seconds between two reads of a request body (nginx client_body_timeout).
    body_timeout: float = 60.0
    # Seconds an idle keep-alive connection stays open (nginx keepalive_timeout).
    keepalive_timeout: int = 75
    # Open client connections at most; also kept under half the file
    # descriptors left after a reserve (the other half is for upstream calls).
    max_connections: int = 1024
    # Host names the proxy answers to besides IP literals and localhost;
    # "name" or "name:port"; "*" turns the check off.
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    # Web origins (scheme://host[:port]) whose pages may call the proxy (CORS).
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    # What an upstream may send back; past a limit its answer is an upstream
    # error (502), never the caller's fault and never the account's.
    # One decoded (gzip undone) unary answer, bytes: a model's inline images
    # fit; a decompression bomb is stopped there while it is decoded.
    upstream_max_body_bytes: int = 64 * 1024 * 1024
    # One line, and one SSE event, of an upstream stream, bytes: an inline
    # image is one line, so this is far above any text (16 MiB).
    upstream_max_line_bytes: int = 16 * 1024 * 1024
    # One line of an upstream answer's head (status line, or one header's
    # name and value), bytes. Google's are well under 1 KiB; Envoy allows
    # 60 KiB for a whole head, nginx 4 or 8 KiB (proxy_buffer_size).
    upstream_max_header_bytes: int = 16 * 1024
    # Header lines in one upstream answer (Envoy's max_headers_count).
    upstream_max_headers: int = 100


CreditGroup = Literal["gemini", "claude", "gpt-oss"]


class CreditsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Google One AI credits as a fallback when quota is spent (UPSTREAM.md
    §4.4). Off by default: spending money must never surprise anyone."""

    enabled: bool = False
    # Which accounts may spend credits: ["*"] or a list of emails.
    accounts: list[str] = msgspec.field(default_factory=lambda: ["*"])
    # At most this many credits per account per day (local midnight).
    daily_limit: int = 50
    # Which model groups may spend them.
    groups: list[CreditGroup] = msgspec.field(default_factory=lambda: ["gemini", "claude"])


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    proxy: ProxyConfig = msgspec.field(default_factory=ProxyConfig)
    upstream: UpstreamConfig = msgspec.field(default_factory=UpstreamConfig)
    oauth: OAuthConfig = msgspec.field(default_factory=OAuthConfig)
    scheduling: SchedulingConfig = msgspec.field(default_factory=SchedulingConfig)
    models: dict[str, str] = msgspec.field(default_factory=dict)
    zai: ZaiConfig = msgspec.field(default_factory=ZaiConfig)
    monitor: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    credits: CreditsConfig = msgspec.field(default_factory=CreditsConfig)

    def effective_auth_mode(self) -> str:
        mode = self.proxy.auth_mode
        if mode == "auto":
            return "all_except_health" if self.proxy.allow_lan_access else "off"
        return mode

    def bind_host(self) -> str:
        return "0.0.0.0" if self.proxy.allow_lan_access else "127.0.0.1"


SECRET_KEYS = {"proxy.api_key", "oauth.client_secret", "zai.api_key"}
# Keys that moved: the old name still reads and sets the new one.
MOVED_KEYS = {"proxy.max_body_bytes": "limits.max_body_bytes"}
PROXY_KEY_MIN = 10
# Other secrets: the shortest real ones (a z.ai key, an OAuth client secret)
# are far longer; this catches a truncated paste.
SECRET_MIN = 8
# (key, lowest, highest) for the numeric [limits].
_LIMIT_RANGES: tuple[tuple[str, float, float], ...] = (
    ("max_head_bytes", 1024, 16 * 1024 * 1024),
    ("max_headers", 8, 10_000),
    ("max_body_bytes", 1024, 4 * 1024 * 1024 * 1024),
    ("max_other_body_bytes", 1024, 4 * 1024 * 1024 * 1024),
    ("header_timeout", 1, 3600),
    ("body_timeout", 1, 3600),
    ("keepalive_timeout", 1, 3600),
    ("max_connections", 1, 1_000_000),
    ("upstream_max_body_bytes", 1024 * 1024, 4 * 1024 * 1024 * 1024),
    ("upstream_max_line_bytes", 64 * 1024, 1024 * 1024 * 1024),
    ("upstream_max_header_bytes", 1024, 1024 * 1024),
    ("upstream_max_headers", 8, 10_000),
)


def _check_key(key: str, value: str, min_length: int, fix: str) -> None:
    problem = key_problem(value, min_length=min_length)
    if problem is not None:
        raise ConfigError(f"{key} {problem}; {fix}", param=key)


def _validate_limits(lim: LimitsConfig) -> None:
    for name, lo, hi in _LIMIT_RANGES:
        val = getattr(lim, name)
        if not lo <= val <= hi:
            raise ConfigError(f"limits.{name} must be {lo:g}..{hi:g}, got {val}", param=f"limits.{name}")
    for key, entries, check in (
        ("limits.allowed_hosts", lim.allowed_hosts, host_entry_problem),
        ("limits.allowed_origins", lim.allowed_origins, origin_entry_problem),
    ):
        for entry in entries:
            problem = check(entry)
            if problem is not None:
                raise ConfigError(f"{key}: {problem}", param=key)


def validate(cfg: Config) -> None:
    """Checks msgspec's types cannot express. Raises ConfigError naming the key."""
    p = cfg.proxy
    if not (1 <= p.port <= 65535):
        raise ConfigError(f"proxy.port must be 1..65535, got {p.port}", param="proxy.port")
    if not p.api_key.startswith("sk-") or len(p.api_key) < PROXY_KEY_MIN:
        raise ConfigError(
            f"proxy.api_key must start with 'sk-' and be at least {PROXY_KEY_MIN} characters",
            param="proxy.api_key",
        )
    _check_key("proxy.api_key", p.api_key, PROXY_KEY_MIN, "`agctl key rotate` makes a new one")
    for key, value in (("zai.api_key", cfg.zai.api_key), ("oauth.client_secret", cfg.oauth.client_secret)):
        if value:
            _check_key(key, value, SECRET_MIN, f"paste it again with `agctl config set {key} VALUE`")
    if not (0.05 <= p.stream_keepalive <= 300):
        raise ConfigError("proxy.stream_keepalive must be 0.05..300 seconds", param="proxy.stream_keepalive")
    if p.request_timeout <= 0:
        raise ConfigError("proxy.request_timeout must be > 0 seconds", param="proxy.request_timeout")
    if p.upstream_proxy and not p.upstream_proxy.startswith(
        ("http://", "https://", "socks5://", "socks5h://")
    ):
        raise ConfigError(
            "proxy.upstream_proxy must be an http://, https:// or socks5:// URL (or empty)",
            param="proxy.upstream_proxy",
        )
    for key, url in (
        ("oauth.auth_url", cfg.oauth.auth_url),
        ("oauth.token_url", cfg.oauth.token_url),
        ("oauth.userinfo_url", cfg.oauth.userinfo_url),
        ("zai.base_url", cfg.zai.base_url),
    ):
        if not url.startswith(("http://", "https://")) or len(url) < 10 or any(c.isspace() for c in url):
            raise ConfigError(f"{key} must be an http(s) URL, got {url!r}", param=key)
    cv = cfg.upstream.client_version
    if cv and not _VERSION_RE.match(cv):
        raise ConfigError(
            f"upstream.client_version must be X.Y.Z digits (e.g. 2.14.0), got {cv!r}",
            param="upstream.client_version",
        )
    vu = cfg.upstream.version_url
    if vu and (not vu.startswith(("http://", "https://")) or any(c.isspace() for c in vu)):
        raise ConfigError(
            f"upstream.version_url must be an http(s) URL or empty, got {vu!r}", param="upstream.version_url"
        )
    ua = cfg.upstream.user_agent
    if ua and (not ua.isprintable() or not ua.isascii() or len(ua) > 256):
        raise ConfigError(
            "upstream.user_agent must be printable ASCII (at most 256 characters)",
            param="upstream.user_agent",
        )
    if cfg.credits.daily_limit < 0:
        raise ConfigError(
            "credits.daily_limit must be >= 0 (credits per account per day)", param="credits.daily_limit"
        )
    if not cfg.upstream.endpoints:
        raise ConfigError("upstream.endpoints must list at least one URL", param="upstream.endpoints")
    for url in cfg.upstream.endpoints:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"upstream.endpoints: not an http(s) URL: {url!r}", param="upstream.endpoints")
    if cfg.scheduling.max_attempts < 1:
        raise ConfigError("scheduling.max_attempts must be >= 1", param="scheduling.max_attempts")
    if cfg.monitor.retention_days < 0:
        raise ConfigError("monitor.retention_days must be >= 0", param="monitor.retention_days")
    _validate_limits(cfg.limits)


def _decode_error(exc: msgspec.ValidationError | msgspec.DecodeError, where: str) -> ConfigError:
    return ConfigError(f"{where}: {exc}")


def _move_keys(data: Any) -> bool:
    """Old key names in a config file -> their new place (MOVED_KEYS); a key
    already set in its new place wins. True when something moved."""
    if not isinstance(data, dict):
        return False
    moved = False
    for old, new in MOVED_KEYS.items():
        osec, oname = old.split(".")
        nsec, nname = new.split(".")
        section = data.get(osec)
        if isinstance(section, dict) and oname in section:
            value = section.pop(oname)
            target = data.setdefault(nsec, {})
            if isinstance(target, dict):
                target.setdefault(nname, value)
            moved = True
    return moved


def load(path: Path) -> tuple[Config, list[str]]:
    """Load config; returns (config, changes) where changes (empty when none)
    name the defaults filled in that must be persisted (a generated api_key,
    a moved key, an old default replaced), in words for the log."""
    changes: list[str] = []
    if path.exists():
        try:
            data = msgspec.toml.decode(path.read_bytes())
            if _move_keys(data):
                changes.append("moved renamed keys to their new place")
            cfg = msgspec.convert(data, type=Config)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise _decode_error(exc, str(path)) from None
    else:
        cfg = Config()
    if cfg.upstream.user_agent == _OLD_DEFAULT_USER_AGENT:
        cfg.upstream.user_agent = ""
        changes.append("replaced the old default upstream.user_agent")
    if cfg.upstream.endpoints == _OLD_DEFAULT_ENDPOINTS:
        cfg.upstream.endpoints = list(DEFAULT_ENDPOINTS)
        changes.append("replaced the old default upstream.endpoints")
    if not cfg.proxy.api_key:
        cfg.proxy.api_key = new_api_key()
        changes.append("generated a new proxy.api_key")
    validate(cfg)
    return cfg, changes


def save(cfg: Config, path: Path) -> None:
    validate(cfg)
    atomic_write(path, msgspec.toml.encode(cfg))


def to_builtins(cfg: Config, *, show_secrets: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(cfg)
    if not show_secrets:
        for key in SECRET_KEYS:
            section, name = key.split(".")
            val = data[section][name]
            if val:
                data[section][name] = val[:5] + "…" if len(val) > 8 else "…"
    return data


def _field_type(struct_cls: type[msgspec.Struct], name: str) -> Any:
    for f in msgspec.structs.fields(struct_cls):
        if f.name == name:
            return f.type
    raise KeyError(name)


def _coerce(key: str, raw: str, typ: Any) -> Any:
    origin = get_origin(typ)
    if typ is bool:
        low = raw.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {raw!r}", param=key)
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, got {raw!r}", param=key) from None
    if typ is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}", param=key) from None
    if typ is str:
        return raw
    if origin is Literal:
        allowed = get_args(typ)
        if raw not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {raw!r}", param=key)
        return raw
    if origin is list:
        text = raw.strip()
        if text.startswith("["):
            try:
                val = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(f"{key}: not a JSON list: {raw!r}", param=key) from None
        else:
            val = [s.strip() for s in text.split(",") if s.strip()]
        if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
            raise ConfigError(f"{key} must be a list of strings", param=key)
        return val
    if origin is dict:
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"{key} must be a JSON object of strings", param=key) from None
        if not isinstance(val, dict) or not all(isinstance(v, str) for v in val.values()):
            raise ConfigError(f"{key} must be a JSON object of strings", param=key)
        return val
    raise ConfigError(f"{key} cannot be set from the command line", param=key)  # pragma: no cover


def keys() -> list[str]:
    out = []
    for section in msgspec.structs.fields(Config):
        if section.name == "models":
            out.append("models.<client-model-or-glob>")
            continue
        for f in msgspec.structs.fields(section.type):
            out.append(f"{section.name}.{f.name}")
    return out


def get_value(cfg: Config, key: str) -> Any:
    key = MOVED_KEYS.get(key, key)
    data = msgspec.to_builtins(cfg)
    section, _, name = key.partition(".")
    if section not in data:
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(keys())}", param=key)
    if not name:
        return data[section]
    if name not in data[section]:
        if section == "models":
            raise ConfigError(f"no model mapping for {name!r}", param=key)
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(keys())}", param=key)
    return data[section][name]


def with_value(cfg: Config, key: str, raw: str) -> Config:
    """A new, validated Config with ``key`` set from the string ``raw``."""
    key = MOVED_KEYS.get(key, key)
    data = msgspec.to_builtins(cfg)
    section, _, name = key.partition(".")
    if not name or section not in data:
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(keys())}", param=key)
    if section == "models":
        if raw == "":
            data["models"].pop(name, None)
        else:
            data["models"][name] = raw
    else:
        section_cls = _field_type(Config, section)
        try:
            typ = _field_type(section_cls, name)
        except KeyError:
            raise ConfigError(
                f"unknown config key {key!r}; known keys: {', '.join(keys())}", param=key
            ) from None
        data[section][name] = _coerce(key, raw, typ)
    try:
        new = msgspec.convert(data, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{key}: {exc}", param=key) from None
    try:
        validate(new)
    except ConfigError as exc:
        raise ConfigError(exc.message, param=key) from None
    return new
