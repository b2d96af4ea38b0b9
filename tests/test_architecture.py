"""The package boundaries a newcomer relies on, checked on the source (ast), not by convention.

Services talk over MQTT and through the on-disk contract in shared/ (shared/recordings/, shared/job_states.py),
never by importing each other: a service can then be changed, run or scaled alone. Only the wiring modules
(services/cli.py, services/supervisor.py) may name several services.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"
SERVICE_NAMES = sorted(p.name for p in SERVICES.iterdir() if (p / "__init__.py").is_file())


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file (dotted name `module`, by default from its path),
    relative ones resolved, `from pkg import mod` also as `pkg.mod` (it may name a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _violations(files: list[Path], banned: list[str]) -> list[str]:
    bad = []
    for path in files:
        for line, module in imported_modules(path):
            if any(module == b or module.startswith(b + ".") for b in banned):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_the_services_are_found() -> None:
    assert {"api", "recorder", "status", "video_worker"} <= set(SERVICE_NAMES)


def test_no_service_imports_another_service() -> None:
    bad = []
    for name in SERVICE_NAMES:
        others = [f"services.{other}" for other in SERVICE_NAMES if other != name]
        bad += _violations(sorted((SERVICES / name).rglob("*.py")), others)
    assert bad == [], "a service imports another service's package (share it through shared/):\n" + "\n".join(bad)


def test_shared_imports_no_service() -> None:
    bad = _violations(sorted((ROOT / "shared").rglob("*.py")), ["services"])
    assert bad == [], "shared/ imports a service:\n" + "\n".join(bad)


def test_the_checker_sees_every_import_form(tmp_path: Path) -> None:
    """The check above is only as good as its parser: every way of naming a module is seen."""
    probe = tmp_path / "probe.py"
    probe.write_text("import services.status.service\nfrom services.api import main\nfrom ..video_worker import jobs\n"
                     "def f():\n    from services import status\n")
    modules = {m for _, m in imported_modules(probe, "services.recorder.probe")}
    assert {"services.status.service", "services.api.main", "services.video_worker.jobs",
            "services.status"} <= modules


MEDIA = SERVICES / "video_worker" / "media"
JOB_SIDE = ["shared.store", "shared.bus", "shared.job_states", "shared.outbox", "shared.sync", "paho"]
"""What the media package must not reach: the job table, the store, the bus (directly or through shared/)."""


def test_the_worker_media_package_knows_no_jobs_store_or_bus() -> None:
    """services/video_worker/media/ is PyAV work only; the job side calls it, never the other way round."""
    worker_side = [f"services.video_worker.{p.stem}" for p in (SERVICES / "video_worker").iterdir()
                   if p.stem not in ("media", "__init__", "__pycache__")]
    bad = _violations(sorted(MEDIA.rglob("*.py")), worker_side + JOB_SIDE)
    assert bad == [], "the media package imports the job side:\n" + "\n".join(bad)


def test_ezrec_process_needs_only_the_media_package() -> None:
    """`ezrec process` (services/cli.py cmd_process) imports the media package and shared/ only, and loading
    them loads no job table, store or bus (checked in a fresh interpreter: transitive imports count)."""
    tree = ast.parse((SERVICES / "cli.py").read_text())
    cmd = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "cmd_process")
    modules = sorted({n.module for n in ast.walk(cmd) if isinstance(n, ast.ImportFrom) and n.module}
                     | {a.name for n in ast.walk(cmd) if isinstance(n, ast.Import) for a in n.names})
    assert modules, "cmd_process imports nothing: the check below would prove nothing"
    assert all(m.startswith(("services.video_worker.media.", "shared.")) for m in modules), modules
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({tuple(JOB_SIDE)!r})"
            " or (m.startswith('services.video_worker.') and not m.startswith('services.video_worker.media')))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"`ezrec process` loads {out.stdout.strip()}"


LAYOUT_SPELLINGS = ("seg-", "part-", "held-", "whole-input", ".booking.json", ".finished.json", ".logos.json",
                    ".tally.json")
"""Names of the recordings layout (shared/recordings/layout.py): written anywhere else, they would drift apart."""


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string literal in the file but docstrings and prose (a setting's description, a log message: text with
    spaces may describe the layout; a path is spelled without them)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and " " not in node.value]


def test_the_recordings_layout_is_spelled_in_one_module() -> None:
    layout = ROOT / "shared" / "recordings" / "layout.py"
    files = [p for p in sorted([*SERVICES.rglob("*.py"), *(ROOT / "shared").rglob("*.py")]) if p != layout]
    bad = [f"{path.relative_to(ROOT)}:{line} {text!r}" for path in files for line, text in _string_literals(path)
           if any(name in text for name in LAYOUT_SPELLINGS)]
    assert bad == [], "a recordings path spelled outside shared/recordings/layout.py:\n" + "\n".join(bad)
    assert all(name in layout.read_text() for name in LAYOUT_SPELLINGS)
