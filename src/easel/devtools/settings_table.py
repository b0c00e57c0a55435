"""README's configuration table, generated from Settings so that it cannot drift from them.

    python -m easel.devtools.settings_table --write README.md

rewrites the part of README.md between the two markers below; without --write the table is
printed. A test fails when README's table is not what this makes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from easel.cli.setting_options import SETTING_FLAGS, shown_default
from easel.settings import Settings, env_var

BEGIN = "<!-- settings table: `python -m easel.devtools.settings_table --write README.md` -->"
END = "<!-- end of settings table -->"


def settings_table() -> str:
    """One Markdown row per setting: variable, flag, default, description."""
    rows = ["| environment | flag | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        flag = SETTING_FLAGS.get(name)
        default = shown_default(name)
        cells = (
            f"`{env_var(name)}`",
            f"`{flag.replace('/', '` / `')}`" if flag else "",
            f"`{default}`" if default is not None else "unset",
            str(field.description).replace("|", "\\|"),
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def with_current_table(text: str) -> str:
    """`text` with what lies between the markers replaced by the current table."""
    start = text.find(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    return text[: start + len(BEGIN)] + "\n" + settings_table() + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="README", help="rewrite this file's table")
    path = parser.parse_args().write
    if path is None:
        print(settings_table(), end="")
    else:
        path.write_text(with_current_table(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
