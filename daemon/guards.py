"""Pure checks on what callers send (Host, Origin, Content-Type) and on the
keys in config.toml. No I/O: the proxy's guard (``daemon.proxy.guard``) and
``daemon.config`` call these, and property tests drive them alone.

Why each rule exists (issue 17):

- Host: a web page can make a name it controls resolve to 127.0.0.1 (DNS
  rebinding) and then talk to the proxy as if from the same origin. The page
  chooses the name, never an IP literal, so the check is on names. Pass: IP
  literals; ``localhost`` and ``*.localhost`` (RFC 6761 §6.3: always
  loopback, never sent to DNS); single-label names (``mybox``: ICANN bars
  dotless names from the public DNS, so a remote page cannot own one, and
  they are how a LAN names a machine); this machine's own names; what
  ``limits.allowed_hosts`` lists. Refused: any other dotted name. The port is
  not part of the decision: a rebinding page is refused by its name, and
  tunnels (``ssh -L 9000:127.0.0.1:8045``) change the port.
- Origin / Sec-Fetch-Site: browsers send Origin on every request that can
  change state (Fetch standard, "append a request `Origin` header"), and a
  page may post ``text/plain`` or a form anywhere without asking first. A
  request from another origin is refused unless ``limits.allowed_origins``
  lists that origin.
- Content-Type: the model routes take JSON. ``text/plain`` and the form
  types are the ones a page may send cross-site without a CORS preflight.
- Keys travel in HTTP headers, where whitespace is trimmed or splits a value
  and non-ASCII is not portable: printable ASCII without spaces only.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost"})
# Content types a browser may send cross-site without a preflight (the
# CORS-safelisted request-header rule for Content-Type), plus the other
# non-JSON types a model route might be handed.
FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
ANY = "*"


# ---------------------------------------------------------------- keys


def _describe(ch: str) -> str:
    names = {" ": "a space", "\t": "a tab", "\n": "a newline", "\r": "a carriage return"}
    if ch in names:
        return names[ch]
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"a control character (U+{ord(ch):04X})"
    return f"a non-ASCII character (U+{ord(ch):04X})"


def key_problem(value: str, *, min_length: int) -> str | None:
    """What is wrong with a key's value, in words that never repeat the key
    itself; None when it is fine: printable ASCII (0x21..0x7E), no
    whitespace, at least ``min_length`` characters."""
    for i, ch in enumerate(value):
        if not "\x21" <= ch <= "\x7e":
            return (
                f"has {_describe(ch)} at position {i + 1}: a key must be printable ASCII "
                "without spaces (it is sent in an HTTP header)"
            )
    if len(value) < min_length:
        return f"is {len(value)} characters long; at least {min_length} are needed"
    return None


# ---------------------------------------------------------------- Host


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` / ``[v6][:port]`` -> (lower-case host without a
    trailing dot, port or None); None when it is not a host at all."""
    v = value.strip().lower()
    if not v or any(c.isspace() or c in "/\\@?#" for c in v):
        return None
    port: int | None = None
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        host, rest = v[: end + 1], v[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_s = rest[1:]
        else:
            port_s = None
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    else:
        host, sep, port_s_ = v.rpartition(":")
        if not sep:
            host, port_s = v, None
        else:
            port_s = port_s_
        if ":" in host:
            return None  # a bare IPv6 address must be bracketed in Host
    if port_s is not None:
        if not port_s.isdigit() or not 0 < int(port_s) <= 65535 or len(port_s) > 5:
            return None
        port = int(port_s)
    host = host.rstrip(".") if not host.startswith("[") else host
    if not host:
        return None
    if not host.startswith("["):
        for label in host.split("."):
            if not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label):
                return None
            if not label.isascii():
                return None
    return host, port


def is_ip_literal(host: str) -> bool:
    if host.startswith("["):
        return True  # split_host checked it
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def host_allowed(
    value: str, extra: tuple[str, ...] | list[str] = (), local_names: frozenset[str] = frozenset()
) -> bool:
    """Is ``value`` (a Host header) one the proxy answers to? ``extra``:
    ``limits.allowed_hosts`` (``name``, ``name:port``, or ``*``);
    ``local_names``: this machine's own names (with LAN access on)."""
    if ANY in extra:
        return True
    parsed = split_host(value)
    if parsed is None:
        return False
    host, port = parsed
    if is_ip_literal(host) or host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    if "." not in host:
        return True  # dotless: never a public DNS name (see the module docstring)
    if host in local_names:
        return True
    for entry in extra:
        want = split_host(entry)
        if want is not None and want[0] == host and (want[1] is None or want[1] == port):
            return True
    return False


def host_entry_problem(entry: str) -> str | None:
    """For ``limits.allowed_hosts``: None if ``entry`` is ``*`` or a host."""
    if entry == ANY or split_host(entry) is not None:
        return None
    return f"{entry!r} is not a host name, IP address or name:port"


# ---------------------------------------------------------------- Origin


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` with the default port dropped, lower-cased;
    None for anything else (``null``, a path, a bad host)."""
    v = value.strip().lower()
    scheme, sep, rest = v.partition("://")
    if not sep or scheme not in ("http", "https") or not rest:
        return None
    parsed = split_host(rest)
    if parsed is None:
        return None
    host, port = parsed
    if port == (80 if scheme == "http" else 443):
        port = None
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def origin_entry_problem(entry: str) -> str | None:
    """For ``limits.allowed_origins``: None if ``entry`` is ``*`` or an origin."""
    if entry == ANY or normalize_origin(entry) is not None:
        return None
    return f"{entry!r} is not an origin such as http://localhost:3000 (scheme://host[:port], no path)"


def origin_allowed(origin: str, allowed: tuple[str, ...] | list[str]) -> bool:
    if ANY in allowed:
        return True
    norm = normalize_origin(origin)
    return norm is not None and any(normalize_origin(a) == norm for a in allowed)


def same_origin(origin: str, host: str) -> bool:
    """Is ``origin`` this server itself, as the client addressed it (Host)?
    The proxy speaks plain http."""
    norm = normalize_origin(origin)
    parsed = split_host(host)
    if norm is None or parsed is None:
        return False
    h, port = parsed
    return norm == f"http://{h}" + (f":{port}" if port not in (None, 80) else "")


def cross_site(origin: str | None, fetch_site: str | None, host: str | None) -> bool:
    """Did a browser send this from another origin? An Origin other than our
    own (``null`` included), or ``Sec-Fetch-Site: cross-site``/``same-site``."""
    if origin is not None:
        return not (host is not None and same_origin(origin, host))
    site = (fetch_site or "").strip().lower()
    return site in ("cross-site", "same-site")


# ---------------------------------------------------------------- Content-Type


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def json_content_type(content_type: str | None) -> bool:
    """JSON (``application/json``, ``application/*+json``), or no
    Content-Type at all.

    A missing Content-Type is let through: a browser sends Origin with every
    request that has a body, and the origin check refuses those; what is
    left without the header is a program (a script that forgot it), and the
    body is still parsed as JSON and refused if it is not."""
    if content_type is None:
        return True
    mt = media_type(content_type)
    if mt == "application/json":
        return True
    top, _, sub = mt.partition("/")
    return top == "application" and sub.endswith("+json")
