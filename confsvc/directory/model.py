"""The site tree: province > district > commune. Pure logic, no I/O."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum


class Kind(StrEnum):
    PROVINCE = "province"
    DISTRICT = "district"
    COMMUNE = "commune"


PARENT_KIND = {Kind.PROVINCE: None, Kind.DISTRICT: Kind.PROVINCE, Kind.COMMUNE: Kind.DISTRICT}
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CSV_COLUMNS = ("code", "name", "kind", "parent")


@dataclass(frozen=True)
class Site:
    code: str
    name: str
    kind: Kind
    parent: str | None = None
    rank: int = 0  # position in the imported file: the official order of the tree

    def to_dict(self) -> dict[str, str | None]:
        d = asdict(self)
        d["kind"] = str(self.kind)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Site:
        parent = d.get("parent") or None
        return cls(
            code=str(d["code"]),
            name=str(d["name"]),
            kind=Kind(str(d["kind"])),
            parent=str(parent) if parent else None,
            rank=int(d.get("rank", 0)),  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class DirectoryError(ValueError):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def parse_csv(text: str) -> list[Site]:
    """Parse and validate a whole directory CSV; raise DirectoryError listing every bad row.

    Columns: code, name, kind (province, district, commune), parent (code; empty for the province).
    Rows may come in any order; every parent must be in the file and be of the kind above the row's.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text))
    errors: list[RowError] = []
    try:
        header = next(reader)
    except StopIteration:
        raise DirectoryError([RowError(1, "the file is empty")]) from None
    except csv.Error as exc:
        raise DirectoryError([RowError(1, f"not a CSV file: {exc}")]) from None
    cols = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in cols]
    if missing:
        raise DirectoryError([RowError(1, f"header must name the columns {', '.join(CSV_COLUMNS)}; missing {', '.join(missing)}")])
    idx = {c: cols.index(c) for c in CSV_COLUMNS}
    rows: list[tuple[int, Site | None, str, str]] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            cells = {c: (row[i].strip() if i < len(row) else "") for c, i in idx.items()}
            code, name, kind, parent = cells["code"], cells["name"], cells["kind"].lower(), cells["parent"]
            bad = False
            if not code:
                errors.append(RowError(line, "missing code"))
                bad = True
            elif not CODE_RE.match(code):
                errors.append(RowError(line, f"code {code!r} may hold only letters, digits, '.', '_' and '-' (at most 64)"))
                bad = True
            elif code in seen:
                errors.append(RowError(line, f"duplicate code {code!r} (first on line {seen[code]})"))
                bad = True
            else:
                seen[code] = line
            if not name:
                errors.append(RowError(line, f"missing name for {code or 'this row'}"))
                bad = True
            elif len(name) > 200:
                errors.append(RowError(line, "name is longer than 200 characters"))
                bad = True
            if kind not in Kind.__members__.values():
                errors.append(RowError(line, f"bad kind {cells['kind']!r}: must be province, district or commune"))
                bad = True
            site = None if bad else Site(code, name, Kind(kind), parent or None, rank=len(rows))
            rows.append((line, site, code, parent))
    except csv.Error as exc:
        errors.append(RowError(reader.line_num, f"not a CSV row: {exc}"))
    kinds = {s.code: s.kind for _, s, _, _ in rows if s is not None}
    provinces = [(ln, s) for ln, s, _, _ in rows if s is not None and s.kind is Kind.PROVINCE]
    for line, site, code, parent in rows:
        if site is None:
            continue
        want = PARENT_KIND[site.kind]
        if want is None:
            if parent:
                errors.append(RowError(line, f"the province {code!r} cannot have a parent"))
        elif not parent:
            errors.append(RowError(line, f"{site.kind} {code!r} needs a parent {want}"))
        elif parent not in seen:
            errors.append(RowError(line, f"unknown parent {parent!r}"))
        elif parent in kinds and kinds[parent] is not want:
            errors.append(RowError(line, f"parent {parent!r} is a {kinds[parent]}, a {site.kind} needs a {want}"))
    if not errors and len(provinces) != 1:
        if not provinces:
            errors.append(RowError(1, "the file has no province row"))
        else:
            errors.append(RowError(provinces[1][0], f"a second province (first on line {provinces[0][0]}): one province per directory"))
    if errors:
        errors.sort(key=lambda e: e.line)
        raise DirectoryError(errors)
    return [s for _, s, _, _ in rows if s is not None]


def to_csv(sites: Iterable[Site]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in sites:
        w.writerow([s.code, s.name, str(s.kind), s.parent or ""])
    return out.getvalue()


@dataclass
class Tree:
    """The directory as a tree, for walking and resolving selections."""

    sites: dict[str, Site]
    children: dict[str, list[str]]

    @classmethod
    def build(cls, sites: Iterable[Site]) -> Tree:
        by_code = {s.code: s for s in sites}
        children: dict[str, list[str]] = {code: [] for code in by_code}
        for s in sorted(by_code.values(), key=lambda s: (s.rank, s.name.casefold(), s.code)):
            if s.parent and s.parent in children:
                children[s.parent].append(s.code)
        return cls(by_code, children)

    @property
    def province(self) -> Site | None:
        return next((s for s in self.sites.values() if s.kind is Kind.PROVINCE), None)

    @property
    def districts(self) -> list[Site]:
        p = self.province
        return [self.sites[c] for c in self.children.get(p.code, [])] if p else []

    def communes_of(self, district: str) -> list[Site]:
        return [self.sites[c] for c in self.children.get(district, [])]

    def descendants(self, code: str) -> list[str]:
        out: list[str] = []
        stack = list(reversed(self.children.get(code, [])))
        while stack:
            c = stack.pop()
            out.append(c)
            stack.extend(reversed(self.children.get(c, [])))
        return out

    def district_of(self, code: str) -> Site | None:
        s = self.sites.get(code)
        while s is not None and s.kind is not Kind.DISTRICT:
            s = self.sites.get(s.parent) if s.parent else None
        return s

    def search(self, query: str) -> list[Site]:
        q = fold(query)
        if not q:
            return list(self.ordered())
        return [s for s in self.ordered() if q in fold(s.name) or q in s.code.casefold()]

    def ordered(self) -> Iterable[Site]:
        """Province, then each district followed by its communes."""
        p = self.province
        if p is None:
            return
        yield p
        for d in self.districts:
            yield d
            yield from self.communes_of(d.code)


def fold(text: str) -> str:
    """Case- and accent-insensitive form for search ('Mù Cang Chải' matches 'mu cang chai')."""
    import unicodedata

    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text.casefold()) if unicodedata.category(c) != "Mn").strip()
