"""docs/architecture.md stays true: every file it names exists, every topic it names is one shared/topics.py
builds, and every job or part state it names is one the worker's table has."""

from __future__ import annotations

import re
from pathlib import Path

from services.video_worker.job_table import JobState, PartState
from tests.test_docs_topics import code_topics

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
TOP_DIRS = ("services", "shared", "tests", "docs", "scripts", "bench", "supabase")
REPO_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(TOP_DIRS) + r")/[\w./-]*[\w/])")
DOC_LINK = re.compile(r"\]\(([^)#]+)\)")
TOPIC = re.compile(r"`((?:bookings|recording|video|highlight)(?:/\w+)?)`")


def test_every_file_the_architecture_names_exists():
    text = DOC.read_text(encoding="utf-8")
    named = set(REPO_PATH.findall(text))
    assert len(named) >= 30, "the path pattern no longer finds the doc's files"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == [], f"docs/architecture.md names files that do not exist: {missing}"
    links = set(DOC_LINK.findall(text))
    assert links, "no link to another doc found"
    assert sorted(link for link in links if not (DOC.parent / link).exists()) == []


def test_every_topic_the_architecture_names_is_one_the_code_builds():
    text = DOC.read_text(encoding="utf-8")
    named = set(TOPIC.findall(text)) | set(re.findall(r"ezrec/cam1/([\w/]+)", text))
    assert len(named) >= 6
    built = {topic.removeprefix("ezrec/<camera_id>/") for topic in code_topics()}
    assert sorted(named - built) == [], "topics the doc names that shared/topics.py does not build"


def test_the_state_table_names_the_worker_table_states():
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[2]))
    assert rows["jobs"] == {s.value for s in JobState}
    assert rows["parts"] == {s.value for s in PartState}
