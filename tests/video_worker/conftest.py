"""Media generated once per session: small sizes and a few seconds keep the whole module fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.media import make_intro, make_logo_png, make_recording

REC_SIZE = (640, 360)
REC_FPS = 30
REC_S = 3.0
INTRO_FPS = 25
INTRO_S = 2.0


@dataclass(frozen=True)
class Media:
    recording: Path
    recording_audio: Path
    intro: Path
    intro_silent: Path
    logo_red: Path
    logo_green: Path
    logo_half: Path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("media")
    return Media(
        recording=make_recording(d / "rec.mp4", REC_S, size=REC_SIZE, fps=REC_FPS),
        recording_audio=make_recording(d / "rec_audio.mp4", REC_S, size=REC_SIZE, fps=REC_FPS, audio=True),
        intro=make_intro(d / "intro.mp4", INTRO_S, size=(320, 240), fps=INTRO_FPS, audio=True),
        intro_silent=make_intro(d / "intro_silent.mp4", INTRO_S, size=(320, 240), fps=INTRO_FPS, audio=False),
        logo_red=make_logo_png(d / "red.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=4),
        logo_green=make_logo_png(d / "green.png", size=(64, 32), rgba=(0, 255, 0, 255), transparent_border=4),
        logo_half=make_logo_png(d / "half.png", size=(64, 32), rgba=(255, 255, 255, 128), transparent_border=0),
    )
