"""`make test-containers` only: these tests build the images and run the compose stack in Docker.

`make test` does not collect them (they need a Docker engine, take minutes and use the machine's Docker);
`make test-containers` sets EZREC_CONTAINER_TESTS=1 after scripts/ensure-docker.sh has made sure a daemon
answers and the base images are present.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

collect_ignore_glob = [] if os.environ.get("EZREC_CONTAINER_TESTS") == "1" else ["test_*.py"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = os.environ.get("EZREC_CONTAINER_REPORT")
    if os.environ.get("EZREC_CONTAINER_TESTS") != "1" or not report or not Path(report).is_file():
        return
    terminalreporter.write_sep("-", f"container measurements ({report})")
    terminalreporter.write_line(json.dumps(json.loads(Path(report).read_text()), indent=2))
