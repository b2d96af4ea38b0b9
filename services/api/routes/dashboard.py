"""The dashboard at `/`: a static page (HTML + vanilla JS) that talks to this API with the token it asks for."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", response_class=HTMLResponse, summary="The dashboard (static shell; it asks for the token)",
            description="Today's bookings with live status, device health and the latest videos. The page "
            "itself holds no data: everything is fetched with the token the user enters (kept in localStorage).")
def dashboard() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "dashboard.html").read_text("utf-8"), headers={
        "Cache-Control": "no-cache",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self'; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
    })
