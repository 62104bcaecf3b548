"""`regionctl journal`: show the decision journal and verify its hash chain."""
from __future__ import annotations

import datetime as dt
import json

import typer
from typing import Optional

from rich.table import Table

from failover.control_store import ENV_VAR
from failover.journal import Journal, JournalEntry
from regionctl import output
from regionctl.stack_context import open_existing_store, store_url

_INPUTS_WIDTH = 60


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def entries_table(entries: list[JournalEntry]) -> Table:
    table = Table(title="decision journal (oldest first)")
    for column in ("#", "time (UTC)", "actor", "action", "term", "hash"):
        table.add_column(column, no_wrap=True)
    for column in ("reason", "inputs"):
        table.add_column(column, overflow="fold", ratio=1)
    for e in entries:
        inputs = json.dumps(dict(e.inputs), sort_keys=True, separators=(",", ":"))
        if len(inputs) > _INPUTS_WIDTH:
            inputs = inputs[: _INPUTS_WIDTH - 1] + "…"
        table.add_row(str(e.index), _when(e.at), e.actor, e.action, "" if e.term is None else str(e.term),
                      e.hash[:8], output.humanize(e.reason), inputs)
    return table


def register(app: typer.Typer) -> None:
    @app.command("journal")
    def journal(
        verify: bool = typer.Option(False, "--verify", help="Check the hash chain; exit 1 if it is broken."),
        limit: int = typer.Option(20, "--limit", min=0, help="Show the newest N entries."),
        store: Optional[str] = typer.Option(None, "--store", envvar=ENV_VAR,
                                            help="Control store URL: sqlite:///path.db or consul://127.0.0.1:8500 "
                                                 "(default: the stack's, <state dir>/control.db; never created)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON (entries, or the verification result)."),
    ) -> None:
        """Show the newest decisions of the controller (and verify the chain with --verify)."""
        console = output.console()
        url = store_url(store)
        with open_existing_store(url) as control_store:
            book = Journal(control_store)
            if verify:
                result = book.verify()
                if as_json:
                    output.print_json({"ok": result.ok, "message": result.message, "head_hash": result.head_hash,
                                       "first_bad_index": result.first_bad_index, "store": url})
                    if not result.ok:
                        raise typer.Exit(code=1)
                    return
                if result.ok:
                    head = f"; head hash {result.head_hash}" if result.head_hash else ""
                    console.print(f"[green]journal OK[/green]: {result.message}{head}")
                else:
                    console.print(f"[red]journal BROKEN at entry {result.first_bad_index}[/red]: {result.message}")
                    raise typer.Exit(code=1)
                return
            entries = book.entries(limit=limit)
            if as_json:
                output.print_json({"store": url, "entries": [{**e.body(), "hash": e.hash} for e in entries]})
                return
            if not entries:
                console.print(f"the journal in {url} is empty")
                return
            console.print(entries_table(entries))
