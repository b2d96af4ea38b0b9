"""Finished videos: list, metadata, download (HTTP Range), thumbnail, and signed share links."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse

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
from services.api.spliced_response import video_response
from shared.models import SAFE_ID_PATTERN, ShareLink, Video, VideoKind
from shared.store import NotFound, StoreError
from shared.thumbnails import ThumbnailError
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


NO_CLOUD_COPY = "and there is no cloud copy to send instead (SUPABASE_URL is not set)"


def signed_video_url(state: State, video: Video, *, download: bool, ttl_s: float | None = None) -> str:
    """A short-lived signed Storage URL of a video whose local copy is gone (the disk guard freed it once the cloud
    had it): at most SIGNED_URL_TTL_S, and never longer than `ttl_s` (what is left of a share link)."""
    ttl = int(min(state.settings.signed_url_ttl_s, ttl_s if ttl_s is not None else float("inf")))
    try:
        url = state.store.signed_url("videos", video.storage_path, max(1, ttl),
                                     download=f"{video.booking_id}.mp4" if download else None)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"the file of video {video.id} is neither on this "
                            "device nor in the cloud") from exc
    except StoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "30"},
                            detail=f"the file of video {video.id} was freed on this device (the cloud has it), and "
                            f"the cloud cannot be asked for it now: {exc}") from exc
    if url is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"the file of video {video.id} is not on this device "
                            f"{NO_CLOUD_COPY}")
    return url


def video_file_response(state: State, video: Video, *, download: bool,
                        ttl_s: float | None = None) -> FileResponse | RedirectResponse:
    """The local file (Range), or for a video whose copy was freed a 302 to a short-lived signed Storage URL."""
    path = state.store.local_object_path("videos", video.storage_path)
    if path is None:
        url = signed_video_url(state, video, download=download, ttl_s=ttl_s)
        # Not cached anywhere (the URL is a bearer credential with a deadline), nor sent on as a Referer.
        return RedirectResponse(url, status.HTTP_302_FOUND,
                                headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    name = f"{video.booking_id}.mp4" if video.kind == "full" else f"{video.booking_id}-{PurePath(path).name}"
    return video_response(path, media_type="video/mp4", filename=name,
                          content_disposition_type="attachment" if download else "inline")


@router.get("", response_model=list[Video], summary="List videos, newest first", responses=FORBIDDEN,
            description="Optionally for one booking, one user or one kind (`full`: a booking's finished video; "
                        "`highlight`: a clip a player asked for). A user token only sees its own videos.")
def list_videos(
    state: State,
    principal: Reader,
    booking_id: str | None = Query(None, description="Only videos of this booking",
                                   examples=["court1-2026-11-25-1800"]),
    user_id: UserFilter = None,
    kind: VideoKind | None = Query(None, description="Only videos of this kind", examples=["highlight"]),
    limit: int | None = Query(None, ge=1, le=1000, description="At most this many (newest first)", examples=[20]),
) -> list[Video]:
    videos = state.store.list_videos(booking_id=booking_id, user_id=only_own(principal, user_id), kind=kind)
    return videos[:limit] if limit else videos


@router.get("/{video_id}", response_model=Video, summary="One video's metadata", responses=_NOT_FOUND)
def get_video(state: State, principal: Reader, video_id: VideoId) -> Video:
    return video_or_404(state, video_id, principal)


_FREED = {302: {"description": "With Supabase, for a video whose local copy the disk guard freed (the cloud has "
                "it): `Location` is a signed Storage URL valid SIGNED_URL_TTL_S seconds (default 300)"},
          503: {"model": Error, "description": "The local copy was freed and the cloud cannot be reached now "
                "(Retry-After)"}}


@router.get(
    "/{video_id}/download",
    response_class=FileResponse,
    response_model=None,
    summary="The MP4 (supports Range requests for seeking)",
    description="Accepts the token as `?token=` too, so a `<video src>` can play it. A video whose local copy "
    "was freed (with Supabase, once the cloud had it) answers 302 to a short-lived signed Storage URL; without "
    "Supabase a missing file is a 404 saying so.",
    responses={200: {"content": {"video/mp4": {}}, "description": "The whole file"},
               206: {"content": {"video/mp4": {}}, "description": "The requested byte range"},
               416: {"description": "Range not satisfiable"}, **_NOT_FOUND, **_FREED},
)
def download_video(state: State, principal: ReaderOrQuery, video_id: VideoId,
                   inline: bool = Query(False, description="Play in the browser instead of saving",
                                        examples=[True])) -> FileResponse | RedirectResponse:
    return video_file_response(state, video_or_404(state, video_id, principal), download=not inline)


@router.get(
    "/{video_id}/thumbnail",
    response_class=FileResponse,
    summary="A JPEG of one frame (320 px wide), for lists",
    description="Made from a frame in the middle of the video when it is uploaded (or on first request) and "
    "cached on disk; kept when the disk guard frees the video's local copy, so it is served for a freed video too "
    "(one freed before its thumbnail was kept gets one made from a frame read through a signed Storage URL). "
    "Accepts the token as `?token=` too, so an `<img src>` can show it.",
    responses={200: {"content": {"image/jpeg": {}}, "description": "The thumbnail"}, **_NOT_FOUND,
               422: {"description": "Bad id, or the video file cannot be decoded"},
               503: _FREED[503]},
)
def video_thumbnail(state: State, principal: ReaderOrQuery, video_id: VideoId) -> FileResponse:
    video = video_or_404(state, video_id, principal)
    path = state.store.local_object_path("videos", video.storage_path)
    try:  # a sync endpoint: decoding runs in the thread pool
        if path is not None:
            jpeg = state.thumbnails.get(video.id, path)
        else:
            jpeg = state.thumbnails.cached(video.id, video.size_bytes) or state.thumbnails.from_url(
                video.id, video.size_bytes, signed_video_url(state, video, download=False, ttl_s=60))
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
