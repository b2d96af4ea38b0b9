from __future__ import annotations

import json
import os
import stat

import av
import pytest

from services.cli import main
from shared.runtime import ServiceRuntime
from tests.media import (
    assert_box_near,
    colour_box,
    expected_logo_body,
    frames_rgb,
    make_intro,
    make_logo_png,
    make_recording,
)


def test_init_env_creates_a_token_once(tmp_path, capsys):
    env = tmp_path / ".env"
    env.write_text("CAMERA_ID=court7\n")
    assert main(["init-env", "--env-file", str(env)]) == 0
    first = env.read_text()
    token = next(line.split("=", 1)[1] for line in first.splitlines() if line.startswith("API_TOKEN="))
    assert len(token) >= 32 and "CAMERA_ID=court7" in first
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o600
    assert main(["init-env", "--env-file", str(env)]) == 0
    assert env.read_text() == first, "an existing token is never replaced"


def test_health_follows_the_heartbeat(settings, monkeypatch, capsys):
    monkeypatch.chdir(settings.data_dir)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    assert main(["health", "worker"]) == 1
    runtime = ServiceRuntime("worker", settings)
    runtime.beat()
    assert main(["health", "worker"]) == 0
    assert "healthy" in capsys.readouterr().out


def test_process_makes_the_finished_video_from_the_command_line(tmp_path, capsys):
    """`ezrec process INPUT -o OUTPUT --intro FILE --logo FILE ...` as documented: intro first, every logo drawn."""
    rec = make_recording(tmp_path / "rec.mp4", 2.0)
    intro = make_intro(tmp_path / "intro.mp4", 1.0)
    logos = [make_logo_png(tmp_path / f"logo{i}.png") for i in range(2)]
    out = tmp_path / "out" / "video.mp4"
    assert main(["process", str(rec), "-o", str(out), "--intro", str(intro), "--logo", *map(str, logos)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["warnings"] == [] and report["intro_frames"] == 30 and report["frames"] == 30 + 60
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert (video.codec_context.name, video.format.name) == ("h264", "yuv420p")
        assert sum(1 for _ in c.demux(video) if _.size) == 90
    assert not any(p.name.endswith(".tmp") for p in out.parent.iterdir())


def test_process_places_each_logo_where_its_argument_says(tmp_path, capsys):
    """--logo FILE:corner:width, FILE:corner and FILE: the last takes the first default corner left free."""
    rec = make_recording(tmp_path / "rec.mp4", 1.0)
    red = make_logo_png(tmp_path / "red.png", rgba=(255, 0, 0, 255))
    blue = make_logo_png(tmp_path / "blue.png", rgba=(0, 0, 255, 255))
    green = make_logo_png(tmp_path / "green.png", rgba=(0, 255, 0, 255))
    out = tmp_path / "video.mp4"
    assert main(["process", str(rec), "-o", str(out), "--logo", f"{red}:bottom-left:0.3", f"{blue}:top-right",
                 str(green)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["warnings"] == []
    frame = frames_rgb(out, [15])[15]
    size = (frame.shape[1], frame.shape[0])
    assert_box_near(colour_box(frame, (255, 0, 0)), expected_logo_body(size, "bottom-left", 0.3, 0.02))
    assert_box_near(colour_box(frame, (0, 0, 255)), expected_logo_body(size, "top-right", 0.15, 0.02))
    assert_box_near(colour_box(frame, (0, 255, 0)), expected_logo_body(size, "top-left", 0.15, 0.02))


@pytest.mark.parametrize("logos, words", [
    (["{red}:middle"], "unknown corner 'middle'"),
    (["{red}:top-left:0.9"], "less than or equal to 0.5"),
    (["{red}:top-left:wide"], "width_fraction 'wide'"),
    (["{red}:middle:0.2"], "unknown corner 'middle'"),
    (["{red}:top-left", "{red}:top-left:0.1"], "two logos placed in one corner"),
], ids=["unknown-corner", "too-wide", "not-a-number", "unknown-corner-with-width", "same-corner"])
def test_process_refuses_a_bad_logo_placement_and_writes_nothing(tmp_path, capsys, logos, words):
    rec = make_recording(tmp_path / "rec.mp4", 0.2)
    red = make_logo_png(tmp_path / "red.png")
    out = tmp_path / "video.mp4"
    argv = ["process", str(rec), "-o", str(out), "--logo", *(arg.format(red=red) for arg in logos)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage error
        code = exc.code
    assert code == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_process_reports_an_unreadable_recording_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main(["process", str(bad), "-o", str(tmp_path / "out.mp4")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [bad]
