"""Public share links: a minimal page with a player, and the MP4 itself. The signed token is the credential."""

from __future__ import annotations

import html
import pathlib
from string import Template
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import FileResponse, HTMLResponse

from services.api.deps import State
from services.api.routes.videos import video_file_response
from services.api.share import TOKEN_PATTERN, InvalidShareToken
from shared.models import Video
from shared.timeutil import isoformat_z, utc_now

router = APIRouter(prefix="/share", tags=["share links"])

ShareToken = Annotated[str, Path(pattern=TOKEN_PATTERN, description="The token from POST /videos/{id}/share",
                                 examples=["azNKOXhRMm1UOHZXYjFaYzo5YjJmNGMxZS01ZDZhLTViN2MtOGQ5ZS0wZjFhMmIzYzRkNWU6"
                                           "MTc5NTU1MDQwMA.q1VvW8n3XkZ2bR5tY7uP0sLcJ4hD9gA6eF1iM3oN8rT"])]

_PAGE = Template((pathlib.Path(__file__).parent.parent / "templates" / "share.html").read_text("utf-8"))
_HEADERS = {
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it to another site
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}
_PAGE_HEADERS = {**_HEADERS, "Content-Security-Policy":
                 "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; img-src 'self'"}
_REFUSED = {404: {"description": "Unknown or forged link", "content": {"text/html": {}}},
            410: {"description": "Expired or revoked link", "content": {"text/html": {}}}}


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message


def _resolve(state: State, token: str) -> Video:
    try:
        claim = state.shares.verify(token)
    except InvalidShareToken as exc:
        raise _Refused(status.HTTP_404_NOT_FOUND, "This link is not valid.") from exc
    link = state.store.get_share_link(claim.link_id)
    if link is None or link.video_id != claim.video_id:
        raise _Refused(status.HTTP_404_NOT_FOUND, "This link is not valid.")
    if link.revoked_at is not None:
        raise _Refused(status.HTTP_410_GONE, "This link has been revoked.")
    if claim.expires_at <= utc_now() or link.expires_at <= utc_now():
        raise _Refused(status.HTTP_410_GONE, "This link has expired.")
    video = state.store.get_video(claim.video_id)
    if video is None:
        raise _Refused(status.HTTP_404_NOT_FOUND, "This video is no longer available.")
    return video


def _refusal_page(exc: _Refused) -> HTMLResponse:
    body = f"<!doctype html><meta charset=utf-8><title>EZREC</title><p>{html.escape(exc.message)}</p>"
    return HTMLResponse(body, status_code=exc.code, headers=_PAGE_HEADERS)


@router.get("/{token}", name="share_page", response_class=HTMLResponse, responses=_REFUSED,
            summary="A page that plays the shared video (no Authorization header needed)")
def share_page(state: State, token: ShareToken) -> HTMLResponse:
    try:
        video = _resolve(state, token)
    except _Refused as exc:
        return _refusal_page(exc)
    claim = state.shares.verify(token)
    page = _PAGE.substitute(
        video_src=html.escape(f"{token}/video", quote=True),
        download_src=html.escape(f"{token}/video?download=1", quote=True),
        title=html.escape(f"Video {video.booking_id}"),
        expires=html.escape(isoformat_z(claim.expires_at)),
        duration=f"{video.duration_seconds:.0f}",
    )
    return HTMLResponse(page, headers=_PAGE_HEADERS)


@router.get("/{token}/video", response_class=FileResponse, response_model=None,
            summary="The shared MP4 (supports Range)",
            responses={200: {"content": {"video/mp4": {}}, "description": "The whole file"},
                       206: {"content": {"video/mp4": {}}, "description": "The requested byte range"},
                       416: {"description": "Range not satisfiable"}, **_REFUSED})
def share_video(state: State, token: ShareToken,
                download: bool = Query(False, description="Save as a file (attachment) instead of playing inline",
                                       examples=[True])) -> FileResponse | HTMLResponse:
    try:
        video = _resolve(state, token)
    except _Refused as exc:
        return _refusal_page(exc)
    try:
        response = video_file_response(state, video, download=download)
    except HTTPException:
        return _refusal_page(_Refused(status.HTTP_404_NOT_FOUND, "This video is no longer available."))
    response.headers.update(_HEADERS)
    return response
