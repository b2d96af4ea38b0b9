"""README's settings table, generated from shared/settings.py: each setting's meaning is written once, as its
`Field(description=...)`, and this script writes the table between README's two markers.

    python scripts/settings_table.py            print the table
    python scripts/settings_table.py --write    rewrite it in README.md (`make docs`)

tests/test_docs_settings.py fails while README's table is not exactly what this prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from shared.settings import Settings  # noqa: E402

README = ROOT / "README.md"
BEGIN = "<!-- settings table: generated from shared/settings.py by `make docs`; edit the descriptions there -->"
END = "<!-- end of settings table -->"
HEADER = ["| variable | default | meaning |", "|---|---|---|"]


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


def rows() -> list[str]:
    lines = []
    for name, info in Settings.model_fields.items():
        description = info.description
        if not description:
            raise ValueError(f"Settings.{name} has no description: write its meaning in shared/settings.py")
        if "|" in description or "\n" in description:
            raise ValueError(f"Settings.{name}: a description is one table cell, without `|` or a line break")
        lines.append(f"| `{env_name(name)}` | {shown_default(info)} | {description} |")
    return lines


def table() -> str:
    """The table with its markers, as README holds it (blank lines around it: a Markdown table is a block)."""
    return "\n".join([BEGIN, "", *HEADER, *rows(), "", END])


def rewrite(text: str) -> str:
    """`text` with the part from BEGIN to END replaced by the current table."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no settings table markers ({BEGIN!r} ... {END!r})")
    return text[:start] + table() + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args(argv)
    if not args.write:
        print(table())
        return 0
    text = README.read_text(encoding="utf-8")
    new = rewrite(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print("README.md: settings table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
