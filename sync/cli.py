"""The command line (docs/architecture.md §2.1): parse arguments, call one function, map errors to
exits.

Exit codes: 0 success; 1 a sync failed; 2 usage or configuration error (every problem
listed, no traceback); 3 another instance holds the lock.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sync import __version__, logs, match_cmd, webhook_cmd
from sync.config import Config, find_config_path, load_config
from sync.db import Mirror, migrate, schema_state
from sync.errors import ConfigError, DatabaseError, LockHeld, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before or after the subcommand."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="configuration file (default: $TICKETSYNC_CONFIG, ./config.yaml, "
        "/etc/ticketsync/config.yaml)",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "text", "json"),
        default=default,
        help="log format (default: service.log_format, else auto)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="debug logging",
    )


def _sync_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    flag = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--connection",
        metavar="NAME",
        nargs="+",
        action="extend",
        default=default,
        help="sync only these connections (repeatable)",
    )
    parser.add_argument(
        "--run-once",
        action="store_true",
        default=flag,
        help="sync every selected connection once, then exit",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=flag,
        help="print the planned changes; write nothing anywhere (implies one pass)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        default=flag,
        help="pass the mass-change guard for this one run (implies one pass)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketsync",
        description="Two-way sync between a local SQL ticket mirror and helpdesk vendors.",
    )
    parser.add_argument("--version", action="version", version=f"ticketsync {__version__}")
    _common(parser, top=True)
    _sync_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (the default), or one pass with --run-once")
    _common(run, top=False)
    _sync_options(run, top=False)

    status = sub.add_parser("status", help="show each connection's state from the database")
    _common(status, top=False)
    status.add_argument("--json", action="store_true", help="one JSON object, stable for scripts")

    check = sub.add_parser("check", help="validate the configuration and test credentials")
    _common(check, top=False)
    check.add_argument("--offline", action="store_true", help="do not contact the vendors")

    conflicts = sub.add_parser("conflicts", help="list or settle conflicts left for you")
    _common(conflicts, top=False)
    csub = conflicts.add_subparsers(dest="conflicts_command", metavar="ACTION")
    clist = csub.add_parser("list", help="list open conflicts (the default)")
    _common(clist, top=False)
    clist.add_argument("--json", action="store_true")
    cres = csub.add_parser("resolve", help="settle one conflict")
    _common(cres, top=False)
    cres.add_argument("id", type=int, help="the conflict's id, from `ticketsync conflicts`")
    cres.add_argument(
        "--take", choices=("local", "remote"), required=True, help="which side's value wins"
    )
    conflicts.add_argument("--json", action="store_true", default=argparse.SUPPRESS)

    db = sub.add_parser("db", help="database maintenance")
    _common(db, top=False)
    dsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = dsub.add_parser("upgrade", help="create or migrate the database to this version")
    _common(upgrade, top=False)

    demo = sub.add_parser(
        "demo", help="see ticketsync work against built-in vendor emulators (no account needed)"
    )
    demo.add_argument(
        "--dir",
        metavar="DIR",
        help="where to write the config and mirror (default: a new temporary folder)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the emulators and the daemon running until Ctrl-C",
    )
    demo.add_argument(
        "--tickets",
        type=int,
        default=24,
        metavar="N",
        help="tickets seeded per vendor (default 24)",
    )
    demo.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    _journal_parser(sub)
    _undo_parser(sub)
    webhook_cmd.add_parser(sub, _common)

    guard = sub.add_parser("guard", help="the mass-change guard")
    _common(guard, top=False)
    gsub = guard.add_subparsers(dest="guard_command", metavar="ACTION", required=True)
    approve = gsub.add_parser("approve", help="let the daemon pass a held guard once")
    _common(approve, top=False)
    approve.add_argument("name", help="the connection")
    match_cmd.add_parser(sub, lambda p: _common(p, top=False))
    return parser


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (else a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {minimum}")
        return value

    return parse


def _journal_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from sync.journal_view import DEFAULT_LIMIT

    journal = sub.add_parser(
        "journal", help="show what the syncs changed, where and why (read-only)"
    )
    _common(journal, top=False)
    journal.add_argument(
        "--run", type=_int_at_least(1), metavar="ID", help="only this run's entries"
    )
    journal.add_argument(
        "--ticket",
        type=_int_at_least(1),
        metavar="ID",
        help="only this mirror ticket's (tickets.id)",
    )
    journal.add_argument(
        "--connection",
        metavar="NAME",
        nargs="+",
        action="extend",
        default=argparse.SUPPRESS,
        help="only these connections' entries (repeatable)",
    )
    journal.add_argument(
        "--limit",
        type=_int_at_least(0),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show the newest N entries (default {DEFAULT_LIMIT}; 0 shows all)",
    )
    journal.add_argument("--json", action="store_true", help="one JSON object, stable for scripts")


def _undo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    undo = sub.add_parser("undo", help="put back the values one run overwrote (see journal)")
    _common(undo, top=False)
    undo.add_argument("run_id", type=_int_at_least(1), metavar="RUN_ID", help="the run to undo")
    undo.add_argument("--connection", metavar="NAME", help="the run's connection (a check)")
    undo.add_argument("--ticket", type=_int_at_least(1), metavar="ID", help="only this ticket")
    undo.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    undo.add_argument("--force", action="store_true", help="pass the mass-change guard")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        return _problems(exc)
    except UserError as exc:
        print(f"ticketsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LockHeld as exc:
        print(f"ticketsync: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception:  # a bug of ours: say so, through the redacting log, and fail
        logging.getLogger("sync").exception(
            "internal error; please report it with the lines above (secrets are redacted)"
        )
        return EXIT_FAILED


def _problems(exc: ConfigError) -> int:
    where = f" in {exc.source}" if exc.source else ""
    print(
        f"ticketsync: the configuration{where} has {len(exc.problems)} problem(s):", file=sys.stderr
    )
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)
    return EXIT_USAGE


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return _cmd_demo(args)
    config = load_config(find_config_path(args.config))
    logs.setup(
        args.log_format or config.service.log_format,
        verbose=args.verbose,
        secrets=config.secrets(),
    )
    for warning in config.warnings:
        print(f"ticketsync: warning: {warning}", file=sys.stderr)
    handlers: dict[str | None, Callable[[argparse.Namespace, Config], int]] = {
        None: _cmd_sync,
        "run": _cmd_sync,
        "status": _cmd_status,
        "check": _cmd_check,
        "conflicts": _cmd_conflicts,
        "db": _cmd_db,
        "guard": _cmd_guard,
        "journal": _cmd_journal,
        "undo": _cmd_undo,
        "webhooks": webhook_cmd.run,
        "match": lambda a, c: match_cmd.command(a, c, open_database(c, upgrade=False)),
    }
    return handlers[args.command](args, config)


def _selected(args: argparse.Namespace, config: Config) -> list[str]:
    names = list(dict.fromkeys(args.connection or config.connections))
    unknown = [n for n in names if n not in config.connections]
    if unknown:
        raise ConfigError(
            [
                f"--connection {n}: no such connection "
                f"(configured: {', '.join(config.connections)})"
                for n in unknown
            ],
            source=str(config.path) if config.path else None,
        )
    return names


def open_database(config: Config, *, upgrade: bool) -> Mirror:
    """Open the mirror; migrate it when ``upgrade``, else require it to exist and be current."""
    mirror = Mirror.configured(config.database)
    if upgrade:
        migrate(mirror)
        return mirror
    state = schema_state(mirror)
    if not state.exists:
        raise DatabaseError(
            f"no database at {mirror.redacted_url()}; create it with `ticketsync db upgrade` "
            "(or start a sync, which creates it)"
        )
    if not state.up_to_date:
        raise DatabaseError(
            f"the database at {mirror.redacted_url()} is at revision {state.current or 'none'}, "
            f"this version needs {state.head}; run `ticketsync db upgrade`"
        )
    return mirror


def _cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from sync import once
    from sync.checks import require_vendors
    from sync.daemon import service

    names = _selected(args, config)
    require_vendors(config)
    one_pass = args.run_once or args.dry_run or args.force
    upgrade = config.database.auto_upgrade and not args.dry_run
    mirror = open_database(config, upgrade=upgrade)
    if one_pass:
        return once.run_once(mirror, config, names, dry_run=args.dry_run, force=args.force)
    return service.run_daemon(mirror, config, names, config_path=config.path)


def _cmd_status(args: argparse.Namespace, config: Config) -> int:
    from sync import status

    mirror = open_database(config, upgrade=False)
    report = status.collect(config, mirror)
    print(json.dumps(report, indent=2) if args.json else status.render(report))
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, config: Config) -> int:
    from sync import checks

    return checks.run(config, online=not args.offline)


def _cmd_conflicts(args: argparse.Namespace, config: Config) -> int:
    from sync.engine import conflicts

    mirror = open_database(config, upgrade=False)
    if getattr(args, "conflicts_command", None) == "resolve":
        print(conflicts.resolve(mirror, config, args.id, args.take))
        return EXIT_OK
    rows = conflicts.pending(mirror)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(conflicts.render(rows))
    return EXIT_OK


def _cmd_db(args: argparse.Namespace, config: Config) -> int:
    mirror = Mirror.configured(config.database)
    before = schema_state(mirror)
    after = migrate(mirror)
    if before.current == after.current:
        print(f"{mirror.redacted_url()}: already at revision {after.current}")
    else:
        print(f"{mirror.redacted_url()}: upgraded {before.current or 'empty'} -> {after.current}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from sync import demo

    logs.setup("text", verbose=args.verbose)
    if not args.verbose:
        logging.getLogger("sync").setLevel(logging.WARNING)
    directory = Path(args.dir) if args.dir else None
    return asyncio.run(
        demo.run(
            directory,
            keep_running=args.keep_running,
            tickets=max(4, args.tickets),
            out=lambda line: print(line, flush=True),
        )
    )


def _cmd_journal(args: argparse.Namespace, config: Config) -> int:
    from sync import journal_view

    query = journal_view.JournalQuery(
        run=args.run,
        ticket=args.ticket,
        connections=tuple(dict.fromkeys(args.connection or ())),
        limit=args.limit or None,
    )
    report = journal_view.collect(open_database(config, upgrade=False), query)
    print(json.dumps(report, indent=2) if args.json else journal_view.render(report))
    return EXIT_OK


def _cmd_undo(args: argparse.Namespace, config: Config) -> int:
    from sync import once, undo_cmd
    from sync.checks import require_vendors

    if not args.dry_run:
        require_vendors(config)
    ask = undo_cmd.UndoAsk(args.run_id, args.connection, args.ticket, args.force)
    mirror = open_database(config, upgrade=config.database.auto_upgrade and not args.dry_run)
    return undo_cmd.run(
        mirror,
        config,
        ask,
        dry_run=args.dry_run,
        sync_once=lambda name: once.run_once(mirror, config, [name], dry_run=False, force=False),
        out=lambda line: print(line, flush=True),
    )


def _cmd_guard(args: argparse.Namespace, config: Config) -> int:
    from sync.engine.guard import approve

    if args.name not in config.connections:
        raise ConfigError([f"guard approve {args.name}: no such connection"])
    mirror = open_database(config, upgrade=False)
    if not approve(mirror, args.name, datetime.now(UTC)):
        raise UserError(f"{args.name} has not run yet; there is no guard to approve")
    print(f"{args.name}: approved; the next pass may exceed the mass-change guard once")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
