"""`regionctl`: the operator CLI. A thin face: parse, call one library function, print."""
from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ShopNow multi-region resilience control plane.")

# Each module registers its sub-commands with `register(app)`.
_COMMAND_MODULES: tuple[str, ...] = (
    "regionctl.capacity_cmds",
    "regionctl.journal_cmds",
    "regionctl.artifacts_cmds",
    "regionctl.edge_cmds",
    "regionctl.cell_cmds",
    "regionctl.train_cmds",
    "regionctl.replication_cmds",
    "regionctl.stack_cmds",
    "regionctl.controller_cmds",
    "regionctl.chaos_cmds",
    "regionctl.demo_cmds",
    "regionctl.bench_cmds",
    "regionctl.dns_cmds",
    "regionctl.residency_cmds",
    "regionctl.rollout_cmds",
    "regionctl.experiment_cmds",
)


def build_app() -> typer.Typer:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def main() -> None:
    from regions.errors import ShopNowError

    try:
        build_app()(standalone_mode=True)
    except ShopNowError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
