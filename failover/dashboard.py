"""The operators' live dashboard, served by the controller at /ui, and the game-day reports it shows.

    GET /ui                                 the page (static HTML + JS; it holds no data and no token)
    GET /v1/gamedays                        viewer+  the game-day reports (newest first): verdict, RTO,
                                                     RPO, acknowledged events lost, empty slates
    GET /v1/gamedays/{name}/report.png      viewer+  a report's plot

The page asks for a token (or takes one from the URL fragment, `/ui#token=...`, which never
reaches a server or a log), keeps it in the tab's sessionStorage and sends it as a bearer token to
the same control API the CLI uses: a viewer token reads, a director token may also drain, undrain
and steer, through the same safety rules (a refused change shows the API's message). It polls
GET /v1/status and /v1/journal every `POLL_MS` and /v1/gamedays every few polls.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from fastapi import Depends, FastAPI
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response

from contracts import openapi as oa
from contracts.http_errors import error_response

PAGE = Path(__file__).with_name("dashboard.html")
POLL_MS = 2000
"""The controller probes every second; a two-second poll shows every change within three."""
MAX_REPORTS = 20
"""The newest twenty game days; older ones are on disk (var/gamedays)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def gameday_summaries(directory: Path, *, limit: int = MAX_REPORTS) -> list[dict[str, Any]]:
    """The reports under `directory` (one sub-directory per game day with report.json), newest first."""
    found = []
    for path in directory.glob("*/report.json") if directory.is_dir() else ():
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rto, rpo, load = report.get("rto") or {}, report.get("rpo") or {}, report.get("load") or {}
        found.append({"name": path.parent.name, "experiment": report.get("experiment"), "title": report.get("title"),
                      "verdict": report.get("verdict"), "status": report.get("status"),
                      "started_at": report.get("origin"), "rto_s": rto.get("seconds"),
                      "rpo_s": rpo.get("seconds") if rpo else None, "events_lost": rpo.get("lost") if rpo else None,
                      "empty_slates": load.get("empty_slates"), "requests": load.get("requests"),
                      "has_plot": (path.parent / "report.png").exists()})
    found.sort(key=lambda r: (r["started_at"] or 0.0, r["name"]), reverse=True)
    return found[:limit]


def mount(app: FastAPI, *, gamedays_dir: Path, reader: Callable[..., Any]) -> None:
    """Add /ui and the game-day routes; `reader` is the control API's viewer-permission dependency."""
    page = PAGE.read_text().replace("__POLL_MS__", str(POLL_MS))

    @app.get("/ui", response_class=HTMLResponse)
    def ui() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store",
                                           "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; "
                                                                      "style-src 'self' 'unsafe-inline'; "
                                                                      "script-src 'self' 'unsafe-inline'"})

    @app.get("/v1/gamedays", responses={**oa.ok({"type": "object", "required": ["directory", "reports"]}),
                                        **oa.errors(401)})
    def gamedays(_: Any = Depends(reader)) -> dict[str, Any]:
        return {"directory": str(gamedays_dir), "reports": gameday_summaries(gamedays_dir)}

    @app.get("/v1/gamedays/{name}/report.png", response_class=FileResponse, responses={
        200: {"description": "the report's plot",
              "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        **oa.errors(401, 404, 422)})
    def plot(name: str = PathParam(pattern=_NAME.pattern, description="a game day's directory name"),
             _: Any = Depends(reader)) -> Response:
        path = gamedays_dir / name / "report.png"
        if not path.is_file():
            return error_response(404, "name", f"no game-day report named {name!r} with a plot; see GET /v1/gamedays")
        return FileResponse(path, media_type="image/png")


__all__ = ["MAX_REPORTS", "POLL_MS", "gameday_summaries", "mount"]
