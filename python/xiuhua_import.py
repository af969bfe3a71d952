#!/usr/bin/env python3
"""Imports a grid's households from a CSV file into a Xiuhua store (for the district's IT staff).

One row per resident; rows with the same 网格/楼栋/单元/室 make one household. Columns:

    网格,楼栋,单元,室,姓名,性别,出生年份,电话,身份证号,关系,标签

`标签` holds tags separated by `;` (e.g. `党员;低保`). A row the core refuses (bad phone, bad ID
number, unknown tag ...) is reported with its line number and the core's message; its
household is not imported, the other households are.

Usage: xiuhua_import.py STORE.db CSV [--key KEY] [--user u-it --name 信息员 --device it-pc]
Needs the generated `xiuhua_ffi` module (scripts/python-tests.sh generates it) on sys.path.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field

import xiuhua_ffi as xh

COLUMNS = ["网格", "楼栋", "单元", "室", "姓名", "性别", "出生年份", "电话", "身份证号", "关系", "标签"]


@dataclass
class ImportResult:
    households: list[str] = field(default_factory=list)
    residents: int = 0
    # (line number, message)
    errors: list[tuple[int, str]] = field(default_factory=list)


def readable(e: Exception) -> str:
    """The core's message of a Xiuhua error (every variant carries it as `detail`)."""
    return getattr(e, "detail", None) or str(e)


def _member(row: dict[str, str]) -> xh.NewMember:
    try:
        year = int(row["出生年份"])
    except ValueError:
        raise xh.XiuhuaError.InvalidInput(
            detail=f"invalid birth_year: {row['出生年份']!r} is not a year",
            field="birth_year",
            reason="not a year",
        ) from None
    tags = [t.strip() for t in row.get("标签", "").split(";") if t.strip()]
    return xh.NewMember(
        name=row["姓名"],
        gender=row["性别"],
        birth_year=year,
        phone=row.get("电话") or None,
        id_number=row.get("身份证号") or None,
        relation=row["关系"],
        tags=tags,
    )


def import_csv(store: xh.XiuhuaStore, lines) -> ImportResult:
    """Imports the households of a CSV (an iterable of text lines) into `store`."""
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"the CSV lacks the columns {', '.join(missing)}")
    groups: dict[tuple[str, str, str, str], list[tuple[int, dict[str, str]]]] = {}
    for row in reader:
        key = (row["网格"], row["楼栋"], row["单元"], row["室"])
        groups.setdefault(key, []).append((reader.line_num, row))
    result = ImportResult()
    for (grid, building, unit, room), rows in groups.items():
        line = rows[0][0]
        try:
            members = []
            for line, row in rows:
                members.append(_member(row))
            hh = store.create_household(
                xh.NewHousehold(
                    address=xh.Address(grid=grid, building=building, unit=unit, room=room),
                    members=members,
                    tags=[],
                    note="",
                )
            )
        except xh.XiuhuaError as e:
            result.errors.append((line, readable(e)))
            continue
        result.households.append(hh)
        result.residents += len(members)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store")
    p.add_argument("csv")
    p.add_argument("--key", help="the store's encryption key (SQLCipher)")
    p.add_argument("--user", default="u-it")
    p.add_argument("--name", default="信息员")
    p.add_argument("--role", default="管理员")
    p.add_argument("--device", default="it-import")
    a = p.parse_args(argv)
    try:
        store = xh.XiuhuaStore.open(a.store, a.key, xh.Actor(user=a.user, name=a.name, role=a.role, device=a.device))
        with open(a.csv, encoding="utf-8-sig", newline="") as f:
            r = import_csv(store, f)
    except (xh.XiuhuaError, OSError, ValueError) as e:
        print(f"error: {readable(e)}", file=sys.stderr)
        return 2
    print(f"imported {len(r.households)} households, {r.residents} residents")
    for line, msg in r.errors:
        print(f"line {line}: {msg}", file=sys.stderr)
    return 1 if r.errors else 0


if __name__ == "__main__":
    sys.exit(main())
