"""Finished videos: list, metadata, download (HTTP Range), thumbnail, and signed share links."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse

from services.api.auth import Principal
from services.api.deps import (
    BODY_ERRORS,
    FORBIDDEN,
    UNAUTHORIZED,
    Authorized,
    Reader,
    ReaderOrQuery,
    State,
    UserFilter,
    only_own,
)
from services.api.schemas import Error, Revoked, ShareLinkIn, ShareLinkOut
from services.api.thumbnails import ThumbnailError
from shared.models import SAFE_ID_PATTERN, ShareLink, Video
from shared.timeutil import utc_now

router = APIRouter(prefix="/videos", tags=["videos"], responses=UNAUTHORIZED)

VideoId = Annotated[str, Path(pattern=SAFE_ID_PATTERN, examples=["9b2f4c1e-5d6a-5b7c-8d9e-0f1a2b3c4d5e"],
                              description="The video's `id` (from GET /videos)")]
LinkId = Annotated[str, Path(pattern=SAFE_ID_PATTERN, examples=["k3J9xQ2mT8vWb1Zc"],
                             description="The share link's `id` (from POST or GET /videos/{video_id}/share)")]
_NOT_FOUND = {404: {"model": Error, "description": "No such video, or its file is not on this device"}}


def share_url(request: Request, public_base_url: str | None, token: str) -> str:
    """On PUBLIC_BASE_URL, else relative to this API's origin: never on the Host header, which the client
    chooses (`Host: evil.example` would hand out links to another site)."""
    path = request.app.url_path_for("share_page", token=token)
    return f"{public_base_url}{path}" if public_base_url else f"{request.scope.get('root_path', '')}{path}"


def video_or_404(state: State, video_id: str, principal: Principal | None = None) -> Video:
    video = state.store.get_video(video_id)
    if video is None or (principal is not None and not principal.can_read(video.user_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"video {video_id} not found")
    return video


def video_file_response(state: State, video: Video, *, download: bool) -> FileResponse:
    path = state.store.local_object_path("videos", video.storage_path)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"file for video {video.id} is not on this device")
    return FileResponse(path, media_type="video/mp4", filename=f"{video.booking_id}.mp4",
                        content_disposition_type="attachment" if download else "inline")


@router.get("", response_model=list[Video], summary="List videos, newest first", responses=FORBIDDEN,
            description="Optionally for one booking or one user. A user token only sees its own videos.")
def list_videos(
    state: State,
    principal: Reader,
    booking_id: str | None = Query(None, description="Only videos of this booking",
                                   examples=["court1-2026-11-25-1800"]),
    user_id: UserFilter = None,
    limit: int | None = Query(None, ge=1, le=1000, description="At most this many (newest first)", examples=[20]),
) -> list[Video]:
    videos = state.store.list_videos(booking_id=booking_id, user_id=only_own(principal, user_id))
    return videos[:limit] if limit else videos


@router.get("/{video_id}", response_model=Video, summary="One video's metadata", responses=_NOT_FOUND)
def get_video(state: State, principal: Reader, video_id: VideoId) -> Video:
    return video_or_404(state, video_id, principal)


@router.get(
    "/{video_id}/download",
    response_class=FileResponse,
    summary="The MP4 (supports Range requests for seeking)",
    description="Accepts the token as `?token=` too, so a `<video src>` can play it.",
    responses={200: {"content": {"video/mp4": {}}, "description": "The whole file"},
               206: {"content": {"video/mp4": {}}, "description": "The requested byte range"},
               416: {"description": "Range not satisfiable"}, **_NOT_FOUND},
)
def download_video(state: State, principal: ReaderOrQuery, video_id: VideoId,
                   inline: bool = Query(False, description="Play in the browser instead of saving",
                                        examples=[True])) -> FileResponse:
    return video_file_response(state, video_or_404(state, video_id, principal), download=not inline)


@router.get(
    "/{video_id}/thumbnail",
    response_class=FileResponse,
    summary="A JPEG of one frame (320 px wide), for lists",
    description="Made on first request from a frame in the middle of the video and cached on disk. "
    "Accepts the token as `?token=` too, so an `<img src>` can show it.",
    responses={200: {"content": {"image/jpeg": {}}, "description": "The thumbnail"}, **_NOT_FOUND,
               422: {"description": "Bad id, or the video file cannot be decoded"}},
)
def video_thumbnail(state: State, principal: ReaderOrQuery, video_id: VideoId) -> FileResponse:
    video = video_or_404(state, video_id, principal)
    path = state.store.local_object_path("videos", video.storage_path)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"file for video {video_id} is not on this device")
    try:
        jpeg = state.thumbnails.get(video.id, path)  # a sync endpoint: decoding runs in the thread pool
    except ThumbnailError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return FileResponse(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# ---- share links -----------------------------------------------------------------------------------


@router.post(
    "/{video_id}/share",
    response_model=ShareLinkOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Authorized],
    summary="Create a signed, expiring share link",
    description="Anyone with the link can watch (`url`: a page with a player) or fetch the MP4 (`video_url`, "
    "with Range) until it expires or is revoked; no token header is needed. Both are built on PUBLIC_BASE_URL "
    "when it is set, else they are paths relative to the API's origin (never taken from the Host header). "
    "Links are signed with a key derived from API_TOKEN: rotating API_TOKEN invalidates them all.",
    responses={**_NOT_FOUND, **BODY_ERRORS},
)
def create_share_link(request: Request, state: State, video_id: VideoId,
                      body: ShareLinkIn | None = Body(None)) -> ShareLinkOut:
    video = video_or_404(state, video_id)
    ttl = min(body.expires_in_s or state.settings.share_link_ttl, state.settings.share_link_ttl) if body else \
        state.settings.share_link_ttl
    now = utc_now().replace(microsecond=0)
    link = state.store.create_share_link(ShareLink(id=secrets.token_urlsafe(12), video_id=video.id,
                                                   created_at=now, expires_at=now + timedelta(seconds=ttl)))
    token = state.shares.sign(link.id, link.video_id, link.expires_at)
    page = share_url(request, state.settings.public_base_url, token)
    return ShareLinkOut(id=link.id, video_id=video.id, token=token, url=page, video_url=f"{page}/video",
                        expires_at=link.expires_at)


@router.get("/{video_id}/share", response_model=list[ShareLink], dependencies=[Authorized],
            summary="The video's share links (tokens are not stored; revoked ones included)", responses=_NOT_FOUND)
def list_share_links(state: State, video_id: VideoId) -> list[ShareLink]:
    video_or_404(state, video_id)
    return state.store.list_share_links(video_id)


@router.delete("/{video_id}/share", response_model=Revoked, dependencies=[Authorized],
               summary="Revoke every share link of the video", responses=_NOT_FOUND)
def revoke_all_share_links(state: State, video_id: VideoId) -> Revoked:
    video_or_404(state, video_id)
    return Revoked(revoked=state.store.revoke_share_links(video_id))


@router.delete("/{video_id}/share/{link_id}", response_model=Revoked, dependencies=[Authorized],
               summary="Revoke one share link", responses={404: {"model": Error, "description": "No such link"}})
def revoke_share_link(state: State, video_id: VideoId,
                      link_id: LinkId) -> Revoked:
    link = state.store.get_share_link(link_id)
    if link is None or link.video_id != video_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"share link {link_id} not found for video {video_id}")
    return Revoked(revoked=state.store.revoke_share_links(video_id, link_id))
