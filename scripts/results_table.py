#!/usr/bin/env python
"""The headline figures of ``docs/results/results.json`` as a markdown table.

    python scripts/results_table.py [RESULTS_JSON]                 # print the table
    python scripts/results_table.py [RESULTS_JSON] --write README.md

``--write`` replaces the block between ``<!-- results:begin -->`` and
``<!-- results:end -->`` in the given markdown file (both markers must be there, once).
The schema of the records is in ``docs/results/README.md``; the evaluation scripts add
or replace their own records with :func:`upsert` (``--results`` on each script).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "docs" / "results" / "results.json"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
REQUIRED = ("name", "value", "ci_low", "ci_high", "n", "data", "kind", "model", "command")
KINDS = {
    "trained": "trained on",
    "validation": "used for choices (validation)",
    "unseen": "never seen",
}


class ResultsError(ValueError):
    """A malformed results file or markdown target."""


def check(records: list) -> list[dict]:
    """``records`` if every one has the schema's fields and a known kind, else ResultsError."""
    if not isinstance(records, list):
        raise ResultsError("results must be a JSON list of records")
    names = set()
    for i, r in enumerate(records):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ResultsError(f"record {i} ({r.get('name', '?')!r}) lacks {', '.join(missing)}")
        if r["kind"] not in KINDS:
            raise ResultsError(f"record {r['name']!r}: kind must be one of {', '.join(KINDS)}, got {r['kind']!r}")
        if r["name"] in names:
            raise ResultsError(f"record {r['name']!r} appears twice")
        names.add(r["name"])
    return records


def load(path: str | Path = DEFAULT) -> list[dict]:
    p = Path(path)
    return check(json.loads(p.read_text())) if p.exists() else []


def upsert(path: str | Path, new: list[dict]) -> None:
    """Replace the records of the same name in ``path`` (in place), append the others."""
    records = load(path)
    check(new)
    by_name = {r["name"]: r for r in new}
    out = [by_name.pop(r["name"], r) for r in records] + list(by_name.values())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


def _num(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _value(r: dict) -> str:
    d = int(r.get("digits", 1))
    unit = r.get("unit", "")
    sep = " " if unit else ""
    ci = f" ({_num(r['ci_low'], d)}–{_num(r['ci_high'], d)})" if r["ci_low"] is not None else ""
    return f"{_num(r['value'], d)}{sep}{unit}{ci}"


def _model(s: str) -> str:
    # file names only: the sha256 prefixes stay in the JSON
    return re.sub(r"@[0-9a-f]{6,64}", "", s)


def render(records: list[dict]) -> str:
    """A markdown table, one row per record, in file order."""
    rows = ["| figure | value (95 % CI) | n | measured on | what the model saw | model files | command |",
            "|---|---|---|---|---|---|---|"]
    for r in check(records):
        cells = [r["name"], _value(r), str(r["n"]), r["data"], KINDS[r["kind"]], _model(r["model"]),
                 f"`{r['command']}`"]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def write_block(markdown: str | Path, table: str) -> None:
    """Replace the text between the results markers of ``markdown`` with ``table``."""
    p = Path(markdown)
    text = p.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ResultsError(f"{p}: needs exactly one {BEGIN} followed by one {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    p.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--write", type=Path, default=None, metavar="MARKDOWN",
                    help=f"rewrite the block between {BEGIN} and {END} in this file")
    args = ap.parse_args(argv)
    try:
        table = render(load(args.results))
        if args.write:
            write_block(args.write, table)
        else:
            sys.stdout.write(table)
    except (ResultsError, json.JSONDecodeError, OSError) as e:
        print(f"results_table: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
