"""`ezrec process` as a one-shot command: it never overwrites what it reads, and fails on media it cannot use.

Real files, real PyAV; the command is run through `services.cli.main` as the shell would.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import av
import pytest

from services.cli import main
from tests.media import make_intro, make_logo_png, make_recording


def _digest(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_ino, st.st_mtime_ns


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Path]:
    work = tmp_path / "work"
    work.mkdir()
    return {"dir": work, "rec": make_recording(work / "rec.mp4", 1.0, size=(320, 240), fps=15),
            "intro": make_intro(work / "intro.mp4", 0.5, size=(320, 240), fps=15),
            "logo": make_logo_png(work / "logo.png")}


def _same_file_as(kind: str, target: Path) -> Path:
    """Another name for `target`: itself, a path through `..`, a symlink, a hard link."""
    d = target.parent
    if kind == "same path":
        return target
    if kind == "another path":
        (d / "sub").mkdir(exist_ok=True)
        return d / "sub" / ".." / target.name
    if kind == "symlink":
        link = d / f"link-{target.name}"
        link.symlink_to(target)
        return link
    link = d / f"hard-{target.name}"
    os.link(target, link)
    return link


@pytest.mark.parametrize("kind", ["same path", "another path", "symlink", "hard link"])
@pytest.mark.parametrize("which", ["rec", "intro", "logo"])
def test_output_that_is_an_input_is_refused_and_the_input_untouched(job, capsys, kind, which):
    target = job[which]
    output = _same_file_as(kind, target)
    before = {name: _digest(job[name]) for name in ("rec", "intro", "logo")}
    listing = _listing(job["dir"])
    code = main(["process", str(job["rec"]), "-o", str(output), "--intro", str(job["intro"]),
                 "--logo", str(job["logo"])])
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}: {err}"
    assert "refusing" in err and str(output) in err
    assert {name: _digest(job[name]) for name in ("rec", "intro", "logo")} == before, "an input was changed"
    assert _listing(job["dir"]) == listing, "nothing is written next to it either (no temp file)"


def _bad_media(kind: str, directory: Path, name: str) -> Path:
    if kind == "missing":
        return directory / f"no-such-{name}"
    if kind == "directory":
        path = directory / f"dir-{name}"
        path.mkdir()
        return path
    if kind == "empty":
        path = directory / f"empty-{name}"
        path.write_bytes(b"")
        return path
    path = directory / f"junk-{name}"  # a readable file that does not decode
    path.write_bytes(b"\x00\x01 not media at all " * 64)
    return path


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "undecodable"])
@pytest.mark.parametrize("element", ["intro", "logo"])
def test_unusable_intro_or_logo_fails_without_writing_the_output(job, capsys, kind, element):
    bad = _bad_media(kind, job["dir"], "intro.mp4" if element == "intro" else "logo.png")
    media = {"intro": str(job["intro"]), "logo": str(job["logo"]), element: str(bad)}
    output = job["dir"] / "out" / "video.mp4"
    args = ["process", str(job["rec"]), "-o", str(output), "--intro", media["intro"], "--logo", media["logo"]]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1, f"exit {code}: {err}"
    assert str(bad.name) in err and "--allow-missing-media" in err, err
    assert not output.exists()
    assert not output.parent.exists() or not any(output.parent.iterdir()), "no temp file left behind"

    # asked for explicitly: the video is made without it, the warning says so, exit 0
    assert main([*args, "--allow-missing-media"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert any(w.startswith(element) for w in report["warnings"]), report
    with av.open(str(output)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == (15 if element == "intro" else 15 + 8), "the rest of the job is still done"
