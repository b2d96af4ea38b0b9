"""Public share links: a minimal page with a player, and the MP4 itself. The signed token is the credential."""

from __future__ import annotations

import html
import pathlib
from datetime import datetime
from string import Template
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import FileResponse, HTMLResponse, Response

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
_REFUSAL_HEADERS = {**_HEADERS, "Content-Security-Policy": "default-src 'none'"}
_REFUSED = {404: {"description": "Unknown or forged link", "content": {"text/html": {}}},
            410: {"description": "Expired or revoked link", "content": {"text/html": {}}}}


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message


def _media_src(state: State) -> str:
    """The player's sources: this API, and with Supabase the Storage origin its signed URLs point at (a freed
    video's `/video` redirects there; the CSP applies to the redirect's target too)."""
    url = state.settings.supabase_url
    if not url:
        return "'self'"
    parts = urlsplit(url)
    return f"'self' {parts.scheme}://{parts.netloc}"


def _page_headers(state: State) -> dict[str, str]:
    return {**_HEADERS, "Content-Security-Policy": f"default-src 'none'; media-src {_media_src(state)}; "
            "style-src 'unsafe-inline'; img-src 'self'"}


def _resolve(state: State, token: str) -> tuple[Video, datetime]:
    """The shared video and when the link ends (the earlier of the token's and the stored link's expiry)."""
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
    return video, min(claim.expires_at, link.expires_at)


def _refusal_page(exc: _Refused) -> HTMLResponse:
    body = f"<!doctype html><meta charset=utf-8><title>EZREC</title><p>{html.escape(exc.message)}</p>"
    return HTMLResponse(body, status_code=exc.code, headers=_REFUSAL_HEADERS)


@router.get("/{token}", name="share_page", response_class=HTMLResponse, responses=_REFUSED,
            summary="A page that plays the shared video (no Authorization header needed)")
def share_page(state: State, token: ShareToken) -> HTMLResponse:
    try:
        video, _ = _resolve(state, token)
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
    return HTMLResponse(page, headers=_page_headers(state))


@router.get("/{token}/video", response_class=FileResponse, response_model=None,
            summary="The shared MP4 (supports Range)",
            description="A video whose local copy was freed (with Supabase) answers 302 to a signed Storage URL "
            "made for this request, valid SIGNED_URL_TTL_S seconds and never beyond the link's own expiry; the "
            "redirect is not cacheable, so a revoked link stops working at once.",
            responses={200: {"content": {"video/mp4": {}}, "description": "The whole file"},
                       206: {"content": {"video/mp4": {}}, "description": "The requested byte range"},
                       302: {"description": "The local copy was freed: a short-lived signed Storage URL"},
                       416: {"description": "Range not satisfiable"}, **_REFUSED,
                       503: {"description": "The local copy was freed and the cloud cannot be reached now",
                             "content": {"text/html": {}}}})
def share_video(state: State, token: ShareToken,
                download: bool = Query(False, description="Save as a file (attachment) instead of playing inline",
                                       examples=[True])) -> Response:
    try:
        video, ends = _resolve(state, token)
    except _Refused as exc:
        return _refusal_page(exc)
    try:
        response = video_file_response(state, video, download=download,
                                       ttl_s=(ends - utc_now()).total_seconds())
    except HTTPException as exc:
        message = "This video cannot be fetched right now; try again in a minute." \
            if exc.status_code == status.HTTP_503_SERVICE_UNAVAILABLE else "This video is no longer available."
        return _refusal_page(_Refused(exc.status_code, message))
    response.headers.update(_HEADERS)
    return response
