"""Split a migration file into statements exactly as the Supabase CLI does.

This mirrors the CLI's tokenizer (`pkg/parser` in supabase/cli): a statement ends at a `;`
outside quotes, dollar quotes, comments, parentheses and `BEGIN ATOMIC … END` bodies; each
statement keeps its comments and is trimmed of trailing semicolons and surrounding white space.
Recording the same list in `supabase_migrations.schema_migrations.statements` is what lets
either tool read the other's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_BEGIN_ATOMIC = "atomic"
_END_ATOMIC = "end"


class _State:
    def next(self, ch: str, data: list[str]) -> _State | None:  # pragma: no cover - abstract
        raise NotImplementedError


class _Ready(_State):
    def next(self, ch: str, data: list[str]) -> _State | None:
        if ch == "$":
            return _Tag(offset=len(data) - 1)
        if ch in ("'", '"'):
            return _Quote(delimiter=ch)
        if ch == "-":
            return _Comment()
        if ch == "/":
            return _Block()
        if ch == "\\":
            return _Escape()
        if ch == ";":
            return None
        if ch == "(":
            return _Atomic(prev=self, delimiter=")")
        if ch in ("c", "C"):
            offset = len(data) - len(_BEGIN_ATOMIC)
            if (
                offset > 0
                and "".join(data[offset:]).lower() == _BEGIN_ATOMIC
                and data[offset - 1].isspace()
            ):
                return _Atomic(prev=self, delimiter=_END_ATOMIC)
        return self


class _Comment(_State):
    def next(self, ch: str, data: list[str]) -> _State | None:
        if ch == "-":
            return _Dollar(delimiter="\n")
        return _Ready().next(ch, data)


@dataclass
class _Block(_State):
    depth: int = 0

    def next(self, ch: str, data: list[str]) -> _State | None:
        window = "".join(data[-2:])
        if window == "/*":
            self.depth += 1
            return self
        if self.depth == 0:
            return _Ready().next(ch, data)
        if window == "*/":
            self.depth -= 1
            if self.depth == 0:
                return _Ready()
        return self


@dataclass
class _Quote(_State):
    delimiter: str
    escape: bool = False

    def next(self, ch: str, data: list[str]) -> _State | None:
        if self.escape:
            if ch == self.delimiter:
                self.escape = False
                return self
            return _Ready().next(ch, data)
        if ch == self.delimiter:
            self.escape = True
        return self


@dataclass
class _Dollar(_State):
    delimiter: str

    def next(self, ch: str, data: list[str]) -> _State | None:
        n = len(self.delimiter)
        if len(data) >= n and "".join(data[-n:]) == self.delimiter:
            return _Ready()
        return self


@dataclass
class _Tag(_State):
    offset: int

    def next(self, ch: str, data: list[str]) -> _State | None:
        if ch == "$":
            return _Dollar(delimiter="".join(data[self.offset :]))
        if ch.isalnum() or ch == "_":
            return self
        return _Ready().next(ch, data)


class _Escape(_State):
    def next(self, ch: str, data: list[str]) -> _State | None:
        return _Ready()


@dataclass
class _Atomic(_State):
    prev: _State
    delimiter: str = field(default=")")

    def next(self, ch: str, data: list[str]) -> _State | None:
        curr = self.prev.next(ch, data)
        if curr is not None:
            self.prev = curr
        if isinstance(self.prev, _Ready):
            n = len(self.delimiter)
            if len(data) >= n and "".join(data[-n:]).lower() == self.delimiter.lower():
                return _Ready()
        return self


def split(sql: str) -> list[str]:
    """Return the raw statements of `sql`, each with its terminating `;` (none dropped)."""
    statements: list[str] = []
    state: _State = _Ready()
    data: list[str] = []
    for ch in sql:
        data.append(ch)
        nxt = state.next(ch, data)
        if nxt is None:
            statements.append("".join(data))
            data = []
            state = _Ready()
        else:
            state = nxt
    if data:
        statements.append("".join(data))
    return statements


def split_and_trim(sql: str) -> list[str]:
    """Statements as the CLI records them: trailing `;` and surrounding white space removed."""
    out = []
    for token in split(sql):
        trimmed = token.rstrip(";").strip()
        if trimmed:
            out.append(trimmed)
    return out
