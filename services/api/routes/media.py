"""A user's intro video, logo and up to three sponsor logos: upload (checked, then stored in the `media`
bucket), settings read/write, and the notification for media changed elsewhere."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from services.api.deps import BODY_ERRORS, UNAUTHORIZED, Authorized, Reader, ReaderOrQuery, State
from services.api.media_checks import MAX_LOGO_BYTES, MediaRejected, check_intro, check_logo
from services.api.preview import render_preview
from services.api.schemas import Error, LogoPlacementsIn, MediaNotify, UserSettingsIn, unprocessable
from shared.models import SAFE_ID_PATTERN, LogoPlacement, UserSettings, corner_clashes, storage_path_for_media
from shared.payloads import MediaUpdated
from shared.store.base import check_object_path
from shared.topics import MEDIA_UPDATED

router = APIRouter(prefix="/users/{user_id}", tags=["media"], responses=UNAUTHORIZED)
notify_router = APIRouter(prefix="/media", tags=["media"], responses=UNAUTHORIZED)

MAX_SPONSOR_LOGOS = 3
_SETTINGS_LOCK = threading.Lock()
"""User settings are read, changed and written whole: one change at a time, so none is lost."""
UserId = Annotated[str, Path(pattern=SAFE_ID_PATTERN, examples=["player42"],
                             description="The user whose media this is (the `user_id` of their bookings)")]
MediaKind = Annotated[Literal["intro", "logo"], Path(description="`intro` (a clip put before each of the user's "
                                                     "videos) or `logo` (a PNG overlaid on them)", examples=["logo"])]
SponsorIndex = Annotated[int, Path(ge=0, lt=MAX_SPONSOR_LOGOS, examples=[0],
                                   description="0-based position in the user's `sponsor_logo_paths`")]
PreviewWidth = Annotated[int, Query(ge=160, le=3840, examples=[960],
                                    description="Width of the JPEG in pixels (at most the camera's)")]
_CHUNK = 1024 * 1024
_UPLOAD_ERRORS = {
    **BODY_ERRORS,
    413: {"model": Error, "description": "Larger than the limit (MAX_UPLOAD_MB for intros, 5 MB for logos)"},
    415: {"model": Error, "description": "Not a supported video / not a PNG, or does not decode, or too big "
          "in pixels (4096x4096) or length (intro: 60 s)"},
}


async def _save_limited(upload: UploadFile, dest: FsPath, limit: int) -> str:
    """Stream to disk, refusing past `limit` bytes; returns the sha256 (names the stored object)."""
    digest, size = hashlib.sha256(), 0
    with open(dest, "wb") as out:
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                    detail=f"file larger than {limit / (1024 * 1024):g} MB")
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise unprocessable((("body", "file"), "empty file"))
    return digest.hexdigest()


async def _store_checked(state: State, user_id: str, kind: str, file: UploadFile) -> str:
    """Check the upload, store it as `<user>/media/<kind>-<sha16><ext>`; returns that path."""
    limit = state.settings.max_upload_mb * 1024 * 1024 if kind == "intro" else MAX_LOGO_BYTES
    with tempfile.TemporaryDirectory(dir=state.settings.data_dir) as tmp_dir:
        tmp = FsPath(tmp_dir) / "upload"
        sha = await _save_limited(file, tmp, limit)
        try:
            if kind == "intro":
                ext = await run_in_threadpool(check_intro, tmp)
            else:
                await run_in_threadpool(check_logo, tmp)
                ext = ".png"
        except MediaRejected as exc:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=str(exc)) from exc
        path = storage_path_for_media(user_id, f"{kind}-{sha[:16]}{ext}")
        content_type = "video/mp4" if ext == ".mp4" else "video/x-matroska" if ext == ".mkv" else "image/png"
        await run_in_threadpool(state.store.put_object, "media", path, tmp, content_type)
    return path


def _current(state: State, user_id: str) -> UserSettings:
    return state.store.get_user_settings(user_id) or UserSettings(user_id=user_id)


def _referenced(settings: UserSettings) -> set[str]:
    return {p for p in [settings.intro_video_path, settings.logo_path, *settings.sponsor_logo_paths] if p}


def _drop_unreferenced(state: State, before: UserSettings, after: UserSettings) -> None:
    for path in _referenced(before) - _referenced(after):
        state.store.delete_object("media", path)


@router.put(
    "/media/{kind}",
    response_model=UserSettings,
    dependencies=[Authorized],
    summary="Upload the user's intro video or logo (PNG, ideally with alpha)",
    description="Multipart field `file`. The type is sniffed from the bytes, never taken from the client; "
    "the file is decoded once before it is stored. Publishes `ezrec/media/updated`.",
    responses=_UPLOAD_ERRORS,
)
async def upload_media(state: State, user_id: UserId, kind: MediaKind, file: UploadFile) -> UserSettings:
    path = await _store_checked(state, user_id, kind, file)
    return await run_in_threadpool(_set_media, state, user_id, kind, path)


def _set_media(state: State, user_id: str, kind: Literal["intro", "logo"], path: str | None) -> UserSettings:
    """Store writes wait on SQLite's lock: they run in the thread pool, never on the event loop."""
    with _SETTINGS_LOCK:
        before = _current(state, user_id)
        field = "intro_video_path" if kind == "intro" else "logo_path"
        saved = state.store.put_user_settings(before.model_copy(update={field: path}))
        _drop_unreferenced(state, before, saved)
    state.bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind=kind, path=path))
    return saved


@router.delete("/media/{kind}", response_model=UserSettings, dependencies=[Authorized],
               summary="Remove the user's intro or logo")
def delete_media(state: State, user_id: UserId, kind: MediaKind) -> UserSettings:
    return _set_media(state, user_id, kind, None)


@router.post(
    "/media/sponsor_logos",
    response_model=UserSettings,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Authorized],
    summary=f"Add a sponsor logo (PNG; at most {MAX_SPONSOR_LOGOS} per user)",
    description="Multipart field `file`. Overlaid next to the user's logo on every video they record.",
    responses={**_UPLOAD_ERRORS, 409: {"model": Error, "description": "Already three sponsor logos"}},
)
async def add_sponsor_logo(state: State, user_id: UserId, file: UploadFile) -> UserSettings:
    current = await run_in_threadpool(_current, state, user_id)
    if len(current.sponsor_logo_paths) >= MAX_SPONSOR_LOGOS:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"user {user_id} already has {MAX_SPONSOR_LOGOS} sponsor logos; delete one first")
    path = await _store_checked(state, user_id, "sponsor", file)
    return await run_in_threadpool(_append_sponsor_logo, state, user_id, path)


def _append_sponsor_logo(state: State, user_id: str, path: str) -> UserSettings:
    with _SETTINGS_LOCK:
        before = _current(state, user_id)
        if path in before.sponsor_logo_paths:
            return before
        if len(before.sponsor_logo_paths) >= MAX_SPONSOR_LOGOS:  # another upload won the race
            raise HTTPException(status.HTTP_409_CONFLICT,
                                detail=f"user {user_id} already has {MAX_SPONSOR_LOGOS} sponsor logos")
        saved = state.store.put_user_settings(
            before.model_copy(update={"sponsor_logo_paths": [*before.sponsor_logo_paths, path]}))
    state.bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind="sponsor_logo", path=path))
    return saved


@router.delete("/media/sponsor_logos/{index}", response_model=UserSettings, dependencies=[Authorized],
               summary="Remove one sponsor logo (0-based position in sponsor_logo_paths)",
               responses={404: {"model": Error, "description": "No sponsor logo at that position"}})
def delete_sponsor_logo(state: State, user_id: UserId, index: SponsorIndex) -> UserSettings:
    with _SETTINGS_LOCK:
        before = _current(state, user_id)
        if index >= len(before.sponsor_logo_paths):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"user {user_id} has no sponsor logo {index}")
        remaining = [p for i, p in enumerate(before.sponsor_logo_paths) if i != index]
        placements = [p for i, p in enumerate(before.sponsor_logo_placements) if i != index]  # they go together
        saved = state.store.put_user_settings(before.model_copy(update={"sponsor_logo_paths": remaining,
                                                                        "sponsor_logo_placements": placements}))
        _drop_unreferenced(state, before, saved)
    state.bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind="sponsor_logo", path=None))
    return saved


@router.get("/settings", response_model=UserSettings, summary="The user's media settings",
            description="A user token (Supabase JWT) may read its own settings only.",
            responses={404: {"model": Error, "description": "A user token asked for another user"}})
def get_settings(state: State, principal: Reader, user_id: UserId) -> UserSettings:
    if not principal.can_read(user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"user {user_id} not found")
    return _current(state, user_id)


def _check_media_path(user_id: str, path: str, loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str] | None:
    try:
        check_object_path("media", path)
    except ValueError:
        return loc, f"{path!r} is not a valid object path"
    if not path.startswith(f"{user_id}/media/"):
        return loc, f"{path!r} is not under {user_id}/media/"
    return None


@router.put(
    "/settings",
    response_model=UserSettings,
    dependencies=[Authorized],
    summary="Point the user's media at objects already in the `media` bucket",
    description="For media uploaded elsewhere. Every path must be `<user_id>/media/...` and exist in the store. "
    "The placements are replaced too (left out: the defaults); a 422 names each placement out of range, each two "
    "logos placed in one corner and each sponsor placement without its sponsor logo. "
    "Publishes `ezrec/media/updated` for each kind that changed; objects no longer named are not deleted "
    "(they may belong to whoever uploaded them).",
    responses=BODY_ERRORS,
)
def put_settings(state: State, user_id: UserId, body: UserSettingsIn) -> UserSettings:
    named: list[tuple[tuple[str | int, ...], str]] = []
    if body.intro_video_path:
        named.append((("body", "intro_video_path"), body.intro_video_path))
    if body.logo_path:
        named.append((("body", "logo_path"), body.logo_path))
    named += [(("body", "sponsor_logo_paths", i), p) for i, p in enumerate(body.sponsor_logo_paths)]
    problems = [p for loc, path in named if (p := _check_media_path(user_id, path, loc))]
    problems += _placement_problems(len(body.sponsor_logo_paths), body.logo_placement, body.sponsor_logo_placements)
    if not problems:
        problems = [(loc, f"{path!r} does not exist in the media bucket")
                    for loc, path in named if not state.store.object_exists("media", path)]
    if problems:
        raise unprocessable(*problems)
    with _SETTINGS_LOCK:
        before = _current(state, user_id)
        saved = state.store.put_user_settings(UserSettings(user_id=user_id, **body.model_dump()))
    changes: list[tuple[Literal["intro", "logo", "sponsor_logo"], str | None]] = []
    if before.intro_video_path != saved.intro_video_path:
        changes.append(("intro", saved.intro_video_path))
    if before.logo_path != saved.logo_path or before.logo_placement != saved.logo_placement:
        changes.append(("logo", saved.logo_path))
    if (before.sponsor_logo_paths, before.sponsor_logo_placements) != (saved.sponsor_logo_paths,
                                                                       saved.sponsor_logo_placements):
        changes.append(("sponsor_logo", saved.sponsor_logo_paths[-1] if saved.sponsor_logo_paths else None))
    for kind, path in changes:
        state.bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind=kind, path=path))
    return saved


def _placement_problems(sponsors: int, logo: LogoPlacement | None,
                        placements: list[LogoPlacement | None]) -> list[tuple[tuple[str | int, ...], str]]:
    """Ranges are the model's (pydantic's own 422); here what it cannot see: shared corners, missing logos."""
    problems = [(("body", *loc), msg) for loc, msg in corner_clashes(logo, placements)]
    problems += [(("body", "sponsor_logo_placements", i), f"there is no sponsor logo {i} to place (the user has "
                  f"{sponsors}); use null or leave it out") for i, p in enumerate(placements) if p and i >= sponsors]
    return problems


@router.put(
    "/settings/logo_placements",
    response_model=UserSettings,
    dependencies=[Authorized],
    summary="Where the user's logo and sponsor logos go, and how big they are",
    description="Corner, width and margin of each logo as fractions of the video's width (the height follows the "
    "PNG). Replaces every placement; the logo files stay. Each logo needs a corner of its own. Takes effect from "
    "the user's next booking (a booking under way keeps the placements it started with). A logo too big for "
    "the picture is left out with a warning: GET /users/{user_id}/preview.jpg shows the result. Publishes "
    "`ezrec/media/updated` (kind `logo`).",
    responses={**BODY_ERRORS, 422: {"description": "A value out of range (width_fraction 0.02..0.5, "
                                    "margin_fraction 0..0.2, an unknown corner), two logos in one corner, or a "
                                    "placement for a sponsor logo the user does not have"}},
)
def put_logo_placements(state: State, user_id: UserId, body: LogoPlacementsIn) -> UserSettings:
    with _SETTINGS_LOCK:
        before = _current(state, user_id)
        problems = _placement_problems(len(before.sponsor_logo_paths), body.logo_placement,
                                       body.sponsor_logo_placements)
        if problems:
            raise unprocessable(*problems)
        saved = state.store.put_user_settings(before.model_copy(update={
            "logo_placement": body.logo_placement, "sponsor_logo_placements": body.sponsor_logo_placements}))
    state.bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind="logo", path=saved.logo_path))
    return saved


@router.get(
    "/preview.jpg",
    summary="One frame of the camera's format with the user's logos placed (JPEG)",
    description="A drawn court at CAMERA_WIDTH x CAMERA_HEIGHT with the logos laid out and blended by the worker's "
    "own code, scaled to `width`. Header `X-Logo-Warnings` lists the logos left out and why (`; `-separated). "
    "A user token may preview its own settings only. Accepts `?token=` for `<img src>`.",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The preview"},
               404: {"model": Error, "description": "A user token asked for another user"}},
)
def preview(state: State, principal: ReaderOrQuery, user_id: UserId, width: PreviewWidth = 960) -> Response:
    if not principal.can_read(user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"user {user_id} not found")
    cfg = state.settings
    data, warnings = render_preview(state.store, state.store.get_user_settings(user_id), cfg.camera_width,
                                    cfg.camera_height, width, cfg.data_dir)
    headers = {"Cache-Control": "no-store"}
    if warnings:
        headers["X-Logo-Warnings"] = "; ".join(warnings).encode("ascii", "replace").decode()
    return Response(data, media_type="image/jpeg", headers=headers)


@notify_router.post(
    "/notify",
    response_model=MediaUpdated,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Authorized],
    summary="Tell the device that a user's media changed elsewhere",
    description="Publishes `ezrec/media/updated` (QoS 1) so the video worker drops its cached copy and "
    "fetches the new one for the next video. Does not change the stored settings.",
    responses=BODY_ERRORS,
)
def notify_media(state: State, body: MediaNotify) -> MediaUpdated:
    if body.path is not None and (problem := _check_media_path(body.user_id, body.path, ("body", "path"))):
        raise unprocessable(problem)
    event = MediaUpdated(user_id=body.user_id, kind=body.kind, path=body.path)
    state.bus.publish(MEDIA_UPDATED, event)
    return event
