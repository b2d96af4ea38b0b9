"""Finished videos: list, metadata, download (with HTTP Range)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from services.api.deps import Authorized, State
from shared.models import Video

router = APIRouter(prefix="/videos", tags=["videos"], dependencies=[Authorized])


@router.get("", response_model=list[Video], summary="List videos, optionally for one booking or user")
def list_videos(state: State, booking_id: str | None = None, user_id: str | None = None) -> list[Video]:
    return state.store.list_videos(booking_id=booking_id, user_id=user_id)


def _video_or_404(state: State, video_id: str) -> Video:
    video = state.store.get_video(video_id)
    if video is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"video {video_id} not found")
    return video


@router.get("/{video_id}", response_model=Video, responses={404: {"description": "No such video"}})
def get_video(state: State, video_id: str) -> Video:
    return _video_or_404(state, video_id)


@router.get(
    "/{video_id}/download",
    response_class=FileResponse,
    summary="Download the MP4 (supports Range requests for seeking)",
    responses={200: {"content": {"video/mp4": {}}}, 206: {"description": "Partial content"},
               404: {"description": "No such video"}},
)
def download_video(state: State, video_id: str) -> FileResponse:
    video = _video_or_404(state, video_id)
    path = state.store.local_object_path("videos", video.storage_path)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"file for video {video_id} is not on this device")
    return FileResponse(path, media_type="video/mp4", filename=f"{video.booking_id}.mp4")
