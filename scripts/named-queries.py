#!/usr/bin/env python3
"""Write template.yaml's AWS::Athena::NamedQuery resources from sql/named/*.sql (the files are the one source).

    python scripts/named-queries.py           # rewrite the block between its markers in template.yaml
    python scripts/named-queries.py --check   # exit 1 when the template's block is not what the files give

Each file starts with `-- name: <name>` and `-- description: <description>` lines; the rest is the query, saved
in the AnalyticsWorkGroup against the lake's database.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAMED = REPO / "sql" / "named"
TEMPLATE = REPO / "template.yaml"
BEGIN = "  # BEGIN named queries: generated from sql/named/ by scripts/named-queries.py (do not edit)\n"
END = "  # END named queries\n"
_HEADER = re.compile(r"^--\s*(name|description):\s*(.+?)\s*$")


@dataclass(frozen=True)
class NamedQuery:
    """One file of sql/named/."""

    logical_id: str
    name: str
    description: str
    sql: str


def read_named(folder: Path = NAMED) -> list[NamedQuery]:
    """Every named query, by file name; a file without its name and description lines is an error."""
    queries = []
    for path in sorted(folder.glob("*.sql")):
        header: dict[str, str] = {}
        lines = path.read_text(encoding="utf-8").splitlines()
        body_start = 0
        for index, line in enumerate(lines):
            match = _HEADER.match(line)
            if not match:
                body_start = index
                break
            header[match.group(1)] = match.group(2)
        missing = {"name", "description"} - set(header)
        if missing:
            raise SystemExit(f"{path}: no '-- {sorted(missing)[0]}:' line at the top")
        sql = "\n".join(lines[body_start:]).strip()
        logical_id = "".join(part.capitalize() for part in path.stem.split("_")) + "NamedQuery"
        queries.append(NamedQuery(logical_id, header["name"], header["description"], sql))
    return queries


def render(queries: Sequence[NamedQuery]) -> str:
    """The template block of the named queries."""
    out = [BEGIN]
    for query in queries:
        body = "".join(f"        {line}\n" if line else "\n" for line in query.sql.splitlines())
        description = query.description.replace('"', '\\"')
        out.append(
            f"  {query.logical_id}:\n"
            "    Type: AWS::Athena::NamedQuery\n"
            "    Properties:\n"
            f'      Name: "{query.name}"\n'
            f'      Description: "{description}"\n'
            "      Database: !Ref GlueDatabaseName\n"
            "      WorkGroup: !Ref AnalyticsWorkGroup\n"
            "      QueryString: |\n"
            f"{body}\n"
        )
    out.append(END)
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite or check the block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the block is stale")
    args = parser.parse_args(argv)
    text = TEMPLATE.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"template.yaml has no named-queries block ({BEGIN.strip()!r} … {END.strip()!r})", file=sys.stderr)
        return 1
    start, end = text.index(BEGIN), text.index(END) + len(END)
    wanted = render(read_named())
    if text[start:end] == wanted:
        return 0
    if args.check:
        print("template.yaml's named queries differ from sql/named/: run scripts/named-queries.py", file=sys.stderr)
        return 1
    TEMPLATE.write_text(text[:start] + wanted + text[end:], encoding="utf-8")
    print(f"wrote {len(read_named())} named queries into template.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
