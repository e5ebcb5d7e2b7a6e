"""Split's byte-level pass: find record boundaries in a CSV and cut it into byte ranges.

With RFC 4180 quoting, quotes inside a field are doubled, so at any byte offset the parser
is inside a quoted field exactly when an odd number of `"` bytes came before it. A record
boundary is a line break outside quotes. Counting and finding bytes (`bytes.count`,
`bytes.find`) runs at C speed, so this pass never decodes or parses a field: it reads each
byte once and makes a few Python steps per block and per cut.

Works for every ASCII-compatible encoding (UTF-8, Windows-1252, Latin-1): in those, the
bytes of `"`, `\\n` and `\\r` never occur inside a multi-byte character. UTF-16 is transcoded
to UTF-8 before it gets here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

QUOTE = b'"'


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of the file; `first_line` is the 1-based physical line it starts on."""

    index: int
    start: int
    end: int
    first_line: int

    def as_item(self) -> dict[str, int]:
        return {"index": self.index, "start": self.start, "end": self.end, "first_line": self.first_line}


def line_break(head: bytes) -> bytes:
    """The byte that ends records: `\\n` (LF and CRLF files), or `\\r` for old Mac files that
    use a lone CR."""
    return b"\r" if b"\n" not in head and b"\r" in head else b"\n"


@functools.cache
def record_end(newline: bytes = b"\n") -> re.Pattern[bytes]:
    """Matched from an offset outside quotes, ends just past the next line break outside
    quotes: unquoted runs and whole quoted sections are walked in C. Possessive (++, *+):
    nothing to backtrack into, so a failed match stays linear."""
    nl = re.escape(newline)
    return re.compile(rb'(?:[^"' + nl + rb']++|"[^"]*+")*+' + nl)


def header_end(head: bytes, newline: bytes = b"\n") -> int | None:
    """Offset just past the header record in `head`, or None if `head` holds no complete one."""
    found = record_end(newline).match(head)
    return found.end() if found else None


class RangeIndexer:
    """Feed the file's bytes block by block; collect ranges of at least `range_bytes` bytes,
    each ending just after a record boundary (the last one at the end of the file).

    Memory holds one block; work per block is a few C-speed scans (counts, finds, and one
    regex match per cut), whatever the quoting.
    """

    def __init__(self, range_bytes: int, newline: bytes = b"\n", quoting: bool = True):
        if range_bytes < 1:
            raise ValueError("range_bytes must be positive")
        self.range_bytes = range_bytes
        self.newline = newline
        # JSON Lines: every line break ends a record (JSON strings escape theirs, and their
        # quotes do not pair up as CSV's do), so there is no quote state to follow.
        self.quoting = quoting
        self._record_end = record_end(newline)
        self.ranges: list[ByteRange] = []
        self._offset = 0  # bytes fed so far
        self._in_quotes = False  # quote state at self._offset
        self._lines_before = 0  # line breaks before self._offset
        self._start = 0  # start of the open range
        self._start_line = 1

    @property
    def in_quotes(self) -> bool:
        """True when the bytes fed so far end inside a quoted field (an unclosed quote at EOF)."""
        return self._in_quotes

    def feed(self, block: bytes) -> None:
        if not self.quoting:
            return self._feed_lines(block)
        base, size = self._offset, len(block)
        position = 0  # block offset up to which the quote state (`inside`) is known
        inside = self._in_quotes
        counted = 0  # block offset up to which line breaks are counted into `lines`
        lines = self._lines_before
        while True:
            if inside:
                # No line break counts until the field closes: jump to the next quote.
                closing = block.find(QUOTE, position)
                if closing == -1:
                    break
                position, inside = closing + 1, False
                continue
            # The open range may end only after a break at or beyond this offset.
            search = max(self._start + self.range_bytes - 1 - base, position)
            if search >= size:
                break
            inside = bool(block.count(QUOTE, position, search) & 1)
            position = search
            if inside:
                continue
            # A long quoted field costs no Python steps: the regex walks it.
            found = self._record_end.match(block, position)
            if found is None:  # no such break in this block (it may end inside quotes)
                break
            position = found.end()
            lines += block.count(self.newline, counted, position)
            counted = position
            self.ranges.append(ByteRange(len(self.ranges), self._start, base + position, self._start_line))
            self._start, self._start_line = base + position, lines + 1
        self._in_quotes = inside ^ bool(block.count(QUOTE, position) & 1)
        self._lines_before = lines + block.count(self.newline, counted)
        self._offset = base + size

    def _feed_lines(self, block: bytes) -> None:
        base, size = self._offset, len(block)
        position = counted = 0
        lines = self._lines_before
        while (search := max(self._start + self.range_bytes - 1 - base, position)) < size:
            found = block.find(self.newline, search)
            if found == -1:
                break
            position = found + len(self.newline)
            lines += block.count(self.newline, counted, position)
            counted = position
            self.ranges.append(ByteRange(len(self.ranges), self._start, base + position, self._start_line))
            self._start, self._start_line = base + position, lines + 1
        self._lines_before = lines + block.count(self.newline, counted)
        self._offset = base + size

    def finish(self) -> list[ByteRange]:
        """Close the last range at the end of the file and return them all."""
        if self._offset > self._start or not self.ranges:
            self.ranges.append(ByteRange(len(self.ranges), self._start, self._offset, self._start_line))
        return self.ranges


def index_ranges(blocks: Iterable[bytes], range_bytes: int, newline: bytes = b"\n") -> list[ByteRange]:
    indexer = RangeIndexer(range_bytes, newline)
    for block in blocks:
        indexer.feed(block)
    return indexer.finish()
