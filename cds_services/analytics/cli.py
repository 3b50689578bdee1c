"""``python -m cds_services.analytics``: the analytics table in a terminal, for sites that do not expose the endpoint.

Reads the same database as the service (``CDS_DATABASE_URL``, default the
SQLite file in ``instance/``) and the same knowledge base, and prints the same
numbers as ``/analytics.json``; ``--json`` prints that document, ``--html
PATH`` writes the page. It only reads: a missing database is reported, never
created.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ..config import ConfigError, load_settings
from ..feedback import default_instance_path, default_sqlite_url
from ..knowledge import load_knowledge
from . import DEFAULT_SINCE_DAYS, load_report
from .page import render_page
from .store import served_table

COLUMNS = (
    ("Rule", "code"), ("Shown", "fired"), ("Silent", "silent"), ("Accepted", "accepted"),
    ("Overridden", "overridden"), ("No response", "no_feedback"), ("Override rate", "override_rate"),
    ("Flag", "flagged"),
)


class CliError(Exception):
    """Something the user can fix; printed without a traceback, exit status 2."""


def _cell(key: str, value: Any) -> str:
    if key == "override_rate":
        return "n/a" if value is None else f"{value * 100:.0f}%"
    if key == "flagged":
        return "ALERT FATIGUE?" if value else ""
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_table(report: Mapping[str, Any]) -> str:
    """The page's table as plain text: one line per rule, totals, then the flags and reasons."""
    rows = [[_cell(key, rule[key]) for _, key in COLUMNS] for rule in report["rules"]]
    totals = [_cell(key, report["totals"].get(key, "")) for _, key in COLUMNS]
    totals[0], totals[-1] = "TOTAL", ""
    header = [title for title, _ in COLUMNS]
    widths = [max(len(r[i]) for r in [header, totals, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [
        f"Cards served {report['from'][:10]} to {report['to'][:10]} (last {report['since_days']} days)",
    ]
    if report["silent_rules"]:
        out.append(f"Silent mode (computed, not shown): {', '.join(report['silent_rules'])}")
    out += ["", line(header), line(["-" * w for w in widths]), *map(line, rows)]
    if not rows:
        out.append("(no cards in this period)")
    out += [line(["-" * w for w in widths]), line(totals), ""]
    out.append("Override rate = overridden / (accepted + overridden); cards with no response are left out.")
    flagged = [r for r in report["rules"] if r["flagged"]]
    thresholds = report["thresholds"]
    out.append(
        f"Alert-fatigue candidates (override rate above {thresholds['flag_override_rate_above']:.0%} over at least "
        f"{thresholds['flag_min_answered_cards']} answered cards): "
        + (", ".join(r["code"] for r in flagged) if flagged else "none")
    )
    for rule in report["rules"]:
        if rule["reasons"]:
            reasons = "; ".join(
                f"{r['display']} {r['count']} ({r['with_comment']} with comment)" for r in rule["reasons"]
            )
            out.append(f"  {rule['code']}: {reasons}")
    return "\n".join(out) + "\n"


def _database_url(configured: str | None) -> str:
    if configured:
        return configured
    url = default_sqlite_url(default_instance_path())
    if not os.path.exists(make_url(url).database or ""):
        raise CliError(
            f"no database at {make_url(url).database}: the service has stored nothing here yet "
            "(start it and make a hook call), or set CDS_DATABASE_URL to the service's database"
        )
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cds_services.analytics",
        description="Which rules fire and how often clinicians override them (the /analytics report).",
    )
    parser.add_argument("--since", type=int, default=None, metavar="DAYS",
                        help=f"report on the last DAYS days (default {DEFAULT_SINCE_DAYS})")
    parser.add_argument("--json", action="store_true", help="print the /analytics.json document instead of the table")
    parser.add_argument("--html", metavar="PATH", help="also write the /analytics page to PATH")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         now: datetime | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The CLI serves nothing, so the service's authentication settings do not apply to it.
        settings = load_settings(os.environ if environ is None else environ, {"allow_unauthenticated": True})
        retention = settings.analytics_retention_days
        since = min(DEFAULT_SINCE_DAYS, retention) if args.since is None else args.since
        if not 1 <= since <= retention:
            raise CliError(f"--since must be from 1 to {retention} days (CDS_ANALYTICS_RETENTION_DAYS)")
        engine = create_engine(_database_url(settings.database_url))
        try:
            if not inspect(engine).has_table(served_table.name):
                raise CliError(
                    f"no {served_table.name} table in {engine.url.render_as_string(hide_password=True)}: "
                    "the service has not logged a card there yet"
                )
            report = load_report(
                engine, load_knowledge(settings.knowledge_path), now=now or datetime.now(UTC),
                since_days=since, silent_rules=settings.silent_rules,
            )
        finally:
            engine.dispose()
    except (CliError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: could not read the database: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.json else format_table(report))
    if args.html:
        Path(args.html).write_text(render_page(report), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    return 0
