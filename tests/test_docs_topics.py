"""docs/mqtt.md's topic table lists exactly the topics shared/topics.py builds: one fact, checked in one place."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from shared import topics
from shared.topics import Topics

DOC = Path(__file__).resolve().parent.parent / "docs" / "mqtt.md"


def code_topics() -> set[str]:
    """Every topic Topics can build, spelled with the doc's placeholders."""
    t = Topics("<camera_id>")
    found = {topics.MEDIA_UPDATED, topics.DEADLETTER}
    for name, member in inspect.getmembers(Topics):
        if name.startswith("_") or name == "camera_id" or name == "base":
            continue
        if isinstance(member, property):
            found.add(getattr(t, name))
        elif inspect.isfunction(member):
            found.add(getattr(t, name)("<service>"))
    return found


def documented_topics() -> set[str]:
    """The first `code` span of each row of the topic table (the table whose header starts `| topic |`)."""
    rows, in_table = [], False
    for line in DOC.read_text().splitlines():
        if line.startswith("| topic |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("|---"):
            first = re.search(r"`([^`]+)`", line.split("|")[1])
            assert first, f"a topic row without a topic: {line[:80]}"
            rows.append(first.group(1))
    return {row for row in rows if row.startswith(f"{topics.ROOT}/")}


def test_the_topic_table_lists_every_topic_the_code_uses_and_no_other():
    code, doc = code_topics(), documented_topics()
    assert code - doc == set(), "topics the code uses that docs/mqtt.md does not list"
    assert doc - code == set(), "topics docs/mqtt.md lists that shared/topics.py does not build"
