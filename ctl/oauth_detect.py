"""``agctl oauth detect``: the OAuth client of a local Antigravity / agy install.

The project does not ship Google's client secret (UPSTREAM.md §3.1): it is
embedded in the Antigravity app and the agy binary. This looks through the
files of an installation - the app's JavaScript bundles and ``.asar``
archives (an asar is a JSON header followed by its files stored as they are,
so a byte search sees their text), or the agy binary - for the known client
id, then for a ``GOCSPX-`` secret next to it. It reports where it found
them, shows the secret only masked, and saves both to the daemon's config
only with the user's consent.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctl.client import EXIT_FAILED, EXIT_OK, CtlError
from daemon.config import ANTIGRAVITY_CLIENT_ID

if TYPE_CHECKING:
    from ctl.context import Ctx

# The id without its domain: a bundle may build the full id from two strings.
_ID_CORE = ANTIGRAVITY_CLIENT_ID.split(".", 1)[0].encode()
# Google's installed-app secrets: "GOCSPX-" and 28 URL-safe characters.
_SECRET = re.compile(rb"GOCSPX-[A-Za-z0-9_-]{20,48}")
# How far from the client id a secret still counts as "next to it": in a JS
# bundle both sit in one object literal; a Go binary keeps string constants
# of one package close together.
_NEAR = 4096
_MAX_FILE = 512 * 1024 * 1024
_MAX_HITS = 3
# Files that never hold code: fonts, images, media, locales, Chromium packs.
_SKIP_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .webp .svg .ico .icns .bmp .woff .woff2 .ttf .otf .eot .mp3 .mp4 .wav "
    ".map .md .txt .css .html .pak .dat .bin .license .plist .nib .car .strings .lproj .pdf".split()
)


@dataclass
class Hit:
    path: Path
    client_id: str
    secret: str = field(repr=False)
    near: bool = True

    def public(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "client_id": self.client_id,
            "client_secret": mask(self.secret),
            "next_to_client_id": self.near,
        }


def mask(secret: str) -> str:
    return f"{secret[:7]}…({len(secret)} characters)" if secret else ""


def install_places() -> list[Path]:
    """Where Antigravity and agy are installed, per OS (existing or not)."""
    home = Path.home()
    places: list[Path] = []
    apps = ("Antigravity", "Antigravity IDE")
    if sys.platform == "darwin":
        for root in (Path("/Applications"), home / "Applications"):
            places += [root / f"{name}.app" / "Contents" / "Resources" for name in apps]
    elif sys.platform.startswith("win"):
        local = os.environ.get("LOCALAPPDATA")
        if local:
            places += [Path(local) / "Programs" / name for name in apps]
            places.append(Path(local) / "agy" / "bin" / "agy.exe")
        pf = os.environ.get("ProgramFiles")
        if pf:
            places += [Path(pf) / name for name in apps]
    else:
        for name in ("antigravity", "Antigravity", "antigravity-ide", "Antigravity IDE"):
            places += [
                Path("/usr/share") / name,
                Path("/usr/lib") / name,
                Path("/opt") / name,
                home / ".local" / "share" / name,
            ]
    places.append(home / ".local" / "bin" / "agy")
    for program in ("agy", "antigravity"):
        found = shutil.which(program)
        if found:
            real = Path(found).resolve()
            places.append(real)
            if program == "antigravity":  # a launcher script in <install>/bin/
                places.append(real.parent.parent)
    seen: set[Path] = set()
    return [p for p in places if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def _files(place: Path) -> Iterator[Path]:
    if place.is_file():
        yield place
        return
    if not place.is_dir():
        return
    later: list[Path] = []
    for root, dirs, names in os.walk(place):
        dirs.sort()
        for name in sorted(names):
            p = Path(root) / name
            if p.suffix.lower() in _SKIP_SUFFIXES or p.is_symlink():
                continue
            # Bundles first: they are small and where Electron apps keep config.
            if p.suffix.lower() in (".js", ".cjs", ".mjs", ".asar", ".json"):
                yield p
            else:
                later.append(p)
    yield from later


def scan_file(path: Path) -> Hit | None:
    try:
        size = path.stat().st_size
        if size == 0 or size > _MAX_FILE:
            return None
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos = buf.find(_ID_CORE)
            if pos < 0:
                return None
            best: tuple[int, bytes] | None = None
            hits = 0
            while pos >= 0 and hits < 50:
                lo, hi = max(0, pos - _NEAR), min(size, pos + _NEAR)
                for m in _SECRET.finditer(buf[lo:hi]):
                    dist = abs(lo + m.start() - pos)
                    if best is None or dist < best[0]:
                        best = (dist, m.group())
                hits += 1
                pos = buf.find(_ID_CORE, pos + 1)
            if best is not None:
                return Hit(path, ANTIGRAVITY_CLIENT_ID, best[1].decode())
            # Not next to the id: accept a secret only when the file holds exactly one.
            distinct = {m.group() for m in _SECRET.finditer(buf)}
            if len(distinct) == 1:
                return Hit(path, ANTIGRAVITY_CLIENT_ID, distinct.pop().decode(), near=False)
            return Hit(path, ANTIGRAVITY_CLIENT_ID, "", near=False)
    except (OSError, ValueError):
        return None


def detect(places: list[Path]) -> tuple[list[Hit], list[str]]:
    """Hits (with a secret first) and a line for every place looked at."""
    hits: list[Hit] = []
    looked: list[str] = []
    for place in places:
        if not place.exists():
            looked.append(f"{place}: not there")
            continue
        found_here = 0
        for p in _files(place):
            hit = scan_file(p)
            if hit is not None:
                hits.append(hit)
                found_here += 1
                if sum(1 for h in hits if h.secret) >= _MAX_HITS:
                    break
        looked.append(f"{place}: {'found the client' if found_here else 'no OAuth client in it'}")
        if sum(1 for h in hits if h.secret) >= _MAX_HITS:
            break
    hits.sort(key=lambda h: (not h.secret, not h.near))
    return hits, looked


def _consent(ctx: Ctx) -> bool:
    if ctx.args.yes:
        return True
    if ctx.json or not sys.stdin.isatty():
        return False
    answer = input("save them to the daemon's config (oauth.client_id, oauth.client_secret)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_detect(ctx: Ctx) -> int:
    places = [Path(os.path.abspath(os.path.expanduser(p))) for p in ctx.args.path or []] or install_places()
    hits, looked = detect(places)
    with_secret = [h for h in hits if h.secret]
    result: dict[str, Any] = {"found": [h.public() for h in hits], "searched": looked, "saved": False}
    if not with_secret:
        lines = "\n".join(f"  - {x}" for x in looked)
        partial = (
            f"\nThe client id is in {hits[0].path}, but no single secret could be told apart next to it."
            if hits
            else ""
        )
        raise CtlError(
            "no OAuth client secret found in a local Antigravity or agy installation. Looked in:\n"
            f"{lines}{partial}\n"
            "Pass the install's folder or the agy binary with `agctl oauth detect --path PATH`, or set "
            "the secret yourself: `agctl config set oauth.client_secret SECRET` (or the environment "
            "variable ANTIGRAVITY_OAUTH_CLIENT_SECRET for the daemon).",
            EXIT_FAILED,
            "not_found",
        )
    best = with_secret[0]
    others = {h.secret for h in with_secret[1:]} - {best.secret}
    if not ctx.json:
        print(f"found the Antigravity OAuth client in {best.path}")
        print(f"  client id      {best.client_id}")
        print(
            f"  client secret  {mask(best.secret)}" + ("" if best.near else "  (the only one in that file)")
        )
        for h in with_secret[1:]:
            same = "the same client" if h.secret == best.secret else "a DIFFERENT secret (not used)"
            print(f"  also in {h.path}: {same}")
        if others:
            print(
                "warning: the installation holds more than one secret; the first one is used", file=sys.stderr
            )
    if _consent(ctx):
        current = ctx.client.request("GET", "/config/oauth.client_id")["value"]
        if current != best.client_id:
            ctx.client.request("PUT", "/config/oauth.client_id", json={"value": best.client_id})
        ctx.client.request("PUT", "/config/oauth.client_secret", json={"value": best.secret})
        result["saved"] = True
        if not ctx.json:
            print("saved to the daemon's config: `agctl accounts add` or `agctl accounts import` next")
    elif not ctx.json:
        print("not saved: run `agctl oauth detect --yes` to save them to the daemon's config")
    ctx.out(result)
    return EXIT_OK
