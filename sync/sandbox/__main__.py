"""``python -m sync.sandbox VENDOR --port 0``: run one vendor emulator as its own process.

Prints exactly one line, ``listening on http://HOST:PORT``, once the server accepts
connections, then serves until SIGTERM or SIGINT (crash tests kill the daemon, not the
vendor). ``--seed N`` seeds N demo tickets; ``--token-lifetime S`` sets the lifetime of the
access tokens of emulators with OAuth (Zoho Desk), so a test can force a refresh mid-run.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from sync.sandbox.base import Emulator, emulators


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sync.sandbox", description=__doc__)
    parser.add_argument("vendor", choices=sorted(emulators()))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="demo tickets to seed")
    parser.add_argument("--token-lifetime", type=float, default=None, metavar="S")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Emulator:
    emulator = emulators()[args.vendor]()
    if args.token_lifetime is not None:
        emulator.configure(token_lifetime=args.token_lifetime)
    emulator.seed_demo(args.seed)
    return emulator


async def serve(args: argparse.Namespace) -> None:
    emulator = build(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    url = await emulator.start(args.host, args.port)
    sys.stdout.write(f"listening on {url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        asyncio.run(serve(args))
    except ValueError as exc:  # e.g. a setting this vendor's emulator does not have
        sys.stderr.write(f"python -m sync.sandbox: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
