"""README's generated sections: facts written once in the code, copied here between markers by `make docs`.

- the settings table, from shared/settings.py (each field's `Field(description=...)` is its one meaning);
- the booking rules, from services/api/booking_rules.py (the API's OpenAPI description uses the same text).

    python scripts/readme_sections.py            print the sections
    python scripts/readme_sections.py --write    rewrite them in README.md (`make docs`)

tests/test_docs_settings.py and tests/api/test_booking_rules_doc.py fail while README's copy is stale.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from services.api.booking_rules import RULES  # noqa: E402
from shared.settings import Settings  # noqa: E402

README = ROOT / "README.md"


def env_name(field: str) -> str:
    """The variable a field is read from: pydantic-settings matches the name case-insensitively, no prefix."""
    return field.upper()


def shown_default(info: FieldInfo) -> str:
    """The default as the table shows it: unset, empty, a number, true/false or a `literal`."""
    value: Any = info.get_default(call_default_factory=True)
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple | set):
        if value:
            raise ValueError(f"no table form for a non-empty default {value!r}")
        return "empty"
    return f"`{value}`"


def settings_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        description = info.description
        if not description:
            raise ValueError(f"Settings.{name} has no description: write its meaning in shared/settings.py")
        if "|" in description or "\n" in description:
            raise ValueError(f"Settings.{name}: a description is one table cell, without `|` or a line break")
        lines.append(f"| `{env_name(name)}` | {shown_default(info)} | {description} |")
    return "\n".join(lines)


# name -> (the file that holds the fact, what README shows of it)
SECTIONS: dict[str, tuple[str, Callable[[], str]]] = {
    "settings table": ("shared/settings.py", settings_table),
    "booking rules": ("services/api/booking_rules.py", lambda: RULES),
}


def markers(name: str) -> tuple[str, str]:
    source, _ = SECTIONS[name]
    return (f"<!-- {name}: generated from {source} by `make docs`; edit it there -->",
            f"<!-- end of {name} -->")


def section(name: str) -> str:
    """The section with its markers, as README holds it (blank lines around it: the text is Markdown blocks)."""
    begin, end = markers(name)
    return "\n".join([begin, "", SECTIONS[name][1](), "", end])


def rewrite(text: str) -> str:
    """`text` with every section, from its begin marker to its end marker, replaced by the current one."""
    for name in SECTIONS:
        begin, end = markers(name)
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"README has no markers for the {name} ({begin!r} ... {end!r})")
        text = text[:start] + section(name) + text[stop + len(end):]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the sections in README.md")
    args = parser.parse_args(argv)
    if not args.write:
        print("\n\n".join(section(name) for name in SECTIONS))
        return 0
    text = README.read_text(encoding="utf-8")
    new = rewrite(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print("README.md: generated sections rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
