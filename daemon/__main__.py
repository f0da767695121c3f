"""``antigravityd``: run the daemon in the foreground (never forks)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

from daemon import __version__, logs
from daemon import config as config_mod
from daemon import paths as paths_mod
from daemon.errors import Conflict, GatewayError

log = logging.getLogger("antigravityd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="antigravityd",
        description="antigravity daemon: one local OpenAI/Anthropic/Gemini endpoint for a pool of "
        "Antigravity accounts. Runs in the foreground; drive it with `agctl`.",
    )
    p.add_argument("--home", help="put config, data and socket under this directory (ANTIGRAVITY_HOME)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"antigravityd {__version__}")
    return p.parse_args(argv)


async def _amain(args: argparse.Namespace, target: str) -> int:
    from daemon.service import Service

    paths = paths_mod.resolve(args.home)
    if paths.run_dir_note:  # XDG_RUNTIME_DIR is set but unusable: that is worth a line
        log.warning("%s", paths.run_dir_note)
    if paths_mod.socket_path(paths) == paths.socket:
        paths_mod.check_run_dir(paths.run_dir)
    cfg, changes = config_mod.load(paths.config_file)
    if changes:
        config_mod.save(cfg, paths.config_file)
        log.info("wrote %s: %s", paths.config_file, "; ".join(changes))
    svc = Service(paths, cfg, log_target=target)
    return await svc.run()


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """uvloop when installed (it comes with uvicorn[standard]), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Everything the daemon creates (config, accounts, the monitor DB and its
    # -wal/-shm files, the socket) is private to the user.
    os.umask(0o077)
    target = logs.setup(args.log_level)
    try:
        code = _run(_amain(args, target))
    except Conflict as exc:
        log.error("%s", exc.message)
        code = 1
    except GatewayError as exc:
        log.error("cannot start: %s", exc.message)
        code = 1
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
