"""A user's intro video and logo: upload (checked, then stored in the `media` bucket) and settings."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, UploadFile, status

from services.api.deps import Authorized, State
from services.api.media_checks import MAX_LOGO_BYTES, MediaRejected, check_intro, check_logo
from shared.models import SafeId, UserSettings, storage_path_for_media
from shared.payloads import MediaUpdated
from shared.topics import MEDIA_UPDATED

router = APIRouter(prefix="/users/{user_id}", tags=["media"], dependencies=[Authorized])

_CHUNK = 1024 * 1024


async def _save_limited(upload: UploadFile, dest: Path, limit: int) -> str:
    """Stream to disk, refusing past `limit` bytes; returns the sha256 (names the stored object)."""
    digest, size = hashlib.sha256(), 0
    with open(dest, "wb") as out:
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                    detail=f"file larger than {limit // (1024 * 1024)} MB")
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise HTTPException(422, detail="empty file")
    return digest.hexdigest()


@router.put(
    "/media/{kind}",
    response_model=UserSettings,
    summary="Upload the user's intro video or logo (PNG with alpha)",
    responses={413: {"description": "Too large"}, 415: {"description": "Not a supported video or PNG"}},
)
async def upload_media(state: State, user_id: SafeId, kind: Literal["intro", "logo"], file: UploadFile) -> UserSettings:
    limit = state.settings.max_upload_mb * 1024 * 1024 if kind == "intro" else MAX_LOGO_BYTES
    with tempfile.TemporaryDirectory(dir=state.settings.data_dir) as tmp_dir:
        tmp = Path(tmp_dir) / "upload"
        sha = await _save_limited(file, tmp, limit)
        try:
            if kind == "intro":
                ext = check_intro(tmp)
            else:
                check_logo(tmp)
                ext = ".png"
        except MediaRejected as exc:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=str(exc)) from exc
        path = storage_path_for_media(user_id, f"{kind}-{sha[:16]}{ext}")
        content_type = "video/mp4" if kind == "intro" else "image/png"
        state.store.put_object("media", path, tmp, content_type)
    current = state.store.get_user_settings(user_id) or UserSettings(user_id=user_id)
    old = current.intro_video_path if kind == "intro" else current.logo_path
    updated = current.model_copy(update={"intro_video_path" if kind == "intro" else "logo_path": path})
    saved = state.store.put_user_settings(updated)
    if old and old != path:
        state.store.delete_object("media", old)
    state.bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind=kind, path=path))
    return saved


@router.delete("/media/{kind}", response_model=UserSettings, summary="Remove the user's intro or logo")
def delete_media(state: State, user_id: SafeId, kind: Literal["intro", "logo"]) -> UserSettings:
    current = state.store.get_user_settings(user_id) or UserSettings(user_id=user_id)
    field = "intro_video_path" if kind == "intro" else "logo_path"
    old = getattr(current, field)
    saved = state.store.put_user_settings(current.model_copy(update={field: None}))
    if old:
        state.store.delete_object("media", old)
    state.bus.publish(MEDIA_UPDATED, MediaUpdated(user_id=user_id, kind=kind, path=None))
    return saved


@router.get("/settings", response_model=UserSettings, summary="The user's media settings")
def get_settings(state: State, user_id: SafeId) -> UserSettings:
    return state.store.get_user_settings(user_id) or UserSettings(user_id=user_id)


