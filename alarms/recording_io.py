"""Recording files in and out, as column batches for `AlarmEngine.rows`.

The format is docs/ARCHITECTURE.md "Recording CSV": header `t,param,value`; `param` is a
parameter of the vocabulary or `EVENT` (then `value` is a session step); an empty value or `nan`
is an invalid sample; rows are in time order. Archives may be Parquet with the same three
columns (`t` a number, `param` text, `value` the same text as in the CSV, or a number when there
are no `EVENT` rows).

Reading is columnar and streamed: the file is cut into blocks of whole lines (`block_size`
bytes, 2 MiB by default, small enough for the engine's columns of a block to stay in cache;
the first two smaller, so the engine starts early),
each block is parsed by pyarrow into arrays and checked with numpy, and comes out as one `Rows`
batch; memory stays bounded by a few blocks whatever the file's size. A regular file is mapped
and its blocks parsed where they lie (no copy); a stream is read block by block. `value` is
parsed as a number by the CSV parser itself, a session step's name read as null and put back
from the text of its `EVENT` row (`_event_codes`).
pyarrow rather than polars: one well-kept library reads both the CSV and Parquet (with a batch
iterator, `ParquetFile.iter_batches`), its CSV parser takes a block of bytes we framed ourselves,
which is what lets every error name its line, and it is a smaller dependency than polars with
its query engine, of which we would use nothing.

Errors are those of the line-by-line reader it replaces, word for word, with the file and the
1-based line (blank lines are skipped but counted). Only the fast path is columnar: a block that
pyarrow refuses, or that fails a vectorised check (unknown parameter, time not finite or going
backwards, value not a number), is read again line by line with Python's `csv` from its first
line, which finds the first bad line and says what is wrong with it, or reads the rows a plain
parser accepts and pyarrow does not (`1_000`, padded values). From the first block holding a
quote character to the end, the file is read line by line: a quoted field may span lines, so a
block boundary might fall inside it. A UTF-8 byte order mark is accepted; text that is not UTF-8
is refused at its line.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import mmap
import os
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Final, TextIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from alarms.engine import _CODES, Rows
from kernel.vocabulary import Param, Sample, ScenarioItem, SessionEvent, Step

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "EVENT",
    "HEADER",
    "RecordingError",
    "format_number",
    "read_all",
    "read_recording",
    "write_parquet",
    "write_recording",
]

HEADER: Final = ("t", "param", "value")
EVENT: Final = "EVENT"
DEFAULT_BLOCK_SIZE: Final = 1 << 21
_BOM: Final = b"\xef\xbb\xbf"
_PARQUET_MAGIC: Final = b"PAR1"
# Rows per batch on the line-by-line path and per Parquet batch: about one CSV block.
_SLOW_BATCH: Final = 1 << 16
_READ_AHEAD: Final = 2  # blocks parsed or queued ahead of the one being consumed
_PARQUET_BATCH: Final = 1 << 20

_CODE: Final[dict[str, int]] = {w.value: i for i, w in enumerate(_CODES) if isinstance(w, Param)}
_EVENT_CODE: Final[dict[str, int]] = {
    w.value: i for i, w in enumerate(_CODES) if isinstance(w, SessionEvent)
}
_IS_EVENT: Final = -2  # lookup result for `EVENT` in the param column
_UNKNOWN: Final = -1


class RecordingError(ValueError):
    """A recording that cannot be replayed; `line` is 1-based, as editors count."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        self.file, self.line, self.reason = file, line, reason
        super().__init__(f"{file}:{line}: {reason}")


# ---------------------------------------------------------------------------------- reading

Source = str | os.PathLike[str] | BinaryIO


def read_recording(
    source: Source, *, file: str | None = None, block_size: int = DEFAULT_BLOCK_SIZE
) -> Iterator[Rows]:
    """The rows of a recording (CSV or Parquet), in order, as batches of at most a block each.

    `source` is a path or a binary file open for reading; `file` names it in errors (the path
    by default). A Parquet file is recognised by its magic bytes. Batches may be empty.

    Raises:
        RecordingError: at the first bad line (bad header, wrong number of fields, unknown
            parameter or event, time that is not a finite number or goes backwards, value that
            is not a number, text that is not UTF-8), before the batch holding it is yielded.
    """
    if isinstance(source, str | os.PathLike):
        name = file if file is not None else os.fspath(source)
        with Path(source).open("rb") as f:
            yield from _read(f, name, block_size)
    else:
        yield from _read(source, file if file is not None else "<recording>", block_size)


def read_all(source: Source, *, file: str | None = None) -> Rows:
    """The whole recording as one batch (for files that fit in memory)."""
    return _concat(list(read_recording(source, file=file)))


def _read(f: BinaryIO, file: str, block_size: int) -> Iterator[Rows]:
    head = f.read(len(_PARQUET_MAGIC))
    if head == _PARQUET_MAGIC:
        if not f.seekable():  # a Parquet file's index is at its end
            raise RecordingError(file, 1, "a Parquet recording must be a file, not a stream")
        f.seek(-len(head), io.SEEK_CUR)
        yield from _read_parquet(f, file)
        return
    mapped = _mapped(f)
    if mapped is None:
        yield from _read_csv(_blocks(head, f, block_size), file)
    else:
        # not closed here but when its last view is gone: a view may still be held by the
        # traceback of an error raised from a block, and closing would then fail over it
        start = f.tell() - len(head)
        yield from _read_csv(_mapped_blocks(mapped, start, block_size), file)


def _mapped(f: BinaryIO) -> mmap.mmap | None:
    """The file mapped read-only, if it is a regular file that is not empty; else None.

    Reading a file in place, its blocks views of the page cache, spares a copy of each block
    into fresh memory, which in a short replay is most of the memory the process ever
    touches (and every fresh page is a page fault). As with every mapped file, one cut short
    by another process while it is read ends the process (SIGBUS): replay a recording once it
    is written, not while a writer truncates it.
    """
    try:
        fd = f.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size <= f.tell():
            return None
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None  # a stream (a pipe, a socket, BytesIO): read into memory block by block


def _concat(batches: list[Rows]) -> Rows:
    if len(batches) == 1:
        return batches[0]
    return Rows(
        t=np.concatenate([b.t for b in batches] or [np.empty(0)]),
        what=np.concatenate([b.what for b in batches] or [np.empty(0, np.int8)]),
        value=np.concatenate([b.value for b in batches] or [np.empty(0)]),
        valid=np.concatenate([b.valid for b in batches] or [np.empty(0, bool)]),
    )


def _rows(t: np.ndarray, what: np.ndarray, value: np.ndarray) -> Rows:
    return Rows(
        t=np.ascontiguousarray(t, dtype=np.float64),
        what=np.ascontiguousarray(what, dtype=np.int8),
        value=np.ascontiguousarray(value, dtype=np.float64),
        valid=~np.isnan(value),
    )


class _Span:
    """A block of whole lines, `buf[start:end]`, searched and parsed where it lies.

    `buf` is the file's `mmap` or a block read from a stream; both search a slice in place
    (`find`), so a block is never copied on the fast path.
    """

    __slots__ = ("buf", "end", "start")

    def __init__(self, buf: bytes | mmap.mmap, start: int = 0, end: int | None = None) -> None:
        self.buf, self.start = buf, start
        self.end = len(buf) if end is None else end

    def __len__(self) -> int:
        return self.end - self.start

    def find(self, sub: bytes, lo: int = 0, hi: int | None = None) -> int:
        """Like `bytes.find` on the block (offsets relative to it), -1 if absent."""
        end = self.end if hi is None else self.start + hi
        at = self.buf.find(sub, self.start + lo, end)
        return at - self.start if at >= 0 else -1

    def rfind(self, sub: bytes, lo: int, hi: int) -> int:
        at = self.buf.rfind(sub, self.start + lo, self.start + hi)
        return at - self.start if at >= 0 else -1

    def has(self, sub: bytes) -> bool:
        return self.find(sub) >= 0

    def tail(self, lo: int) -> _Span:
        return _Span(self.buf, self.start + lo, self.end)

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.start : self.end]

    def tobytes(self, lo: int = 0, hi: int | None = None) -> bytes:
        """A copy of the block (offsets relative to it), or of a line of it."""
        return self.buf[self.start + lo : self.end if hi is None else self.start + hi]


def _joined(a: _Span, b: _Span) -> _Span:
    if a.buf is b.buf and a.end == b.start:
        return _Span(a.buf, a.start, b.end)
    return _Span(a.tobytes() + b.tobytes())


def _sizes(block_size: int) -> Iterator[int]:
    """The size of each block to read: a quarter of `block_size`, a half, then whole ones.

    The consumer (the engine) waits for the first block alone; while it works on a small one
    the next, larger, is parsed (measured on the bed workload of bench/replay.py: 512 KiB and
    1 MiB before blocks of 2 MiB took 10 ms, a sixth, off a replay of 65 ms).
    """
    yield max(block_size // 4, 1)
    yield max(block_size // 2, 1)
    yield from itertools.repeat(block_size)


def _blocks(head: bytes, f: BinaryIO, block_size: int) -> Iterator[_Span]:
    """A stream as blocks of about `block_size` bytes, each ending at the end of a line."""
    carry = head
    for size in _sizes(block_size):
        data = f.read(size)
        if not data:
            if carry:
                yield _Span(carry)
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a block (or only `\r` line ends): read on
            carry += data
            continue
        # the carried part of a line is short: copied, with the block, once
        yield _Span(carry + data[:cut]) if carry else _Span(data, 0, cut)
        carry = data[cut:]


# Blocks behind the one being consumed whose pages may still be read: those queued ahead
# (`_READ_AHEAD`), the one consumed, and one for the line-by-line reader's fallback.
_BEHIND: Final = _READ_AHEAD + 2


def _mapped_blocks(mapped: mmap.mmap, start: int, block_size: int) -> Iterator[_Span]:
    """A mapped file as blocks of about `block_size` bytes, each ending at the end of a line.

    The pages of blocks well behind the reader are given back (`MADV_DONTNEED`: the page
    cache keeps them, the process no longer maps them), so the resident memory of a replay
    stays a few blocks whatever the file's size.
    """
    size = len(mapped)
    starts: deque[int] = deque(maxlen=_BEHIND)
    released = 0
    sizes = _sizes(block_size)
    while start < size:
        end = min(start + next(sizes), size)
        if end < size:
            cut = mapped.rfind(b"\n", start, end) + 1
            if cut == 0:  # a line longer than a block (or only `\r` line ends): read on
                nl = mapped.find(b"\n", end)
                cut = size if nl < 0 else nl + 1
            end = cut
        if len(starts) == _BEHIND and _CAN_RELEASE:
            done = starts[0] // mmap.PAGESIZE * mmap.PAGESIZE
            if done > released:
                mapped.madvise(mmap.MADV_DONTNEED, released, done - released)
                released = done
        starts.append(start)
        yield _Span(mapped, start, end)
        start = end


_CAN_RELEASE: Final = hasattr(mmap, "MADV_DONTNEED") and hasattr(mmap.mmap, "madvise")
_LF: Final = ord("\n")
_COUNT_SLICE: Final = 1 << 19


def _count_lines(block: _Span) -> int:
    r"""Lines in `block` as Python's universal newlines count them (`\\n`, `\\r\\n`, `\\r`)."""
    # numpy counts a byte three times faster than `bytes.count`; in slices of 512 KiB its
    # temporary stays small, and few slices mean few times this worker thread gives the GIL up
    # and waits to take it back from the busy engine (64 KiB slices: the cohort of
    # bench/replay.py 7 % slower). A search for blank lines (`\n\n`) costs ten times more.
    data = np.frombuffer(block.view(), np.uint8)
    n = sum(
        int(np.count_nonzero(data[i : i + _COUNT_SLICE] == _LF))
        for i in range(0, len(data), _COUNT_SLICE)
    )
    if block.has(b"\r"):
        raw = block.tobytes()
        n += raw.count(b"\r") - raw.count(b"\r\n")
    if len(block) and block.buf[block.end - 1] not in _LINE_ENDS:
        n += 1
    return n


_LINE_ENDS: Final = frozenset(b"\r\n")


def _read_csv(blocks: Iterator[_Span], file: str) -> Iterator[Rows]:
    first = next(blocks, _Span(b""))
    if first.tobytes(0, len(_BOM)) == _BOM:
        first = first.tail(len(_BOM))
    end = _line_end(first)
    if end == len(first):  # the header may continue in the next block: never on real files
        first = _joined(first, next(blocks, _Span(b"")))
        end = _line_end(first)
    if first.find(b'"', 0, end) >= 0:
        yield from _slow(_texts_of(first, blocks), file, 1, -math.inf, header=True)
        return
    _check_header(first.tobytes(0, end), file)
    yield from _read_ahead(_chain(first.tail(end), blocks), file)


def _read_ahead(blocks: Iterator[_Span], file: str) -> Iterator[Rows]:
    """The blocks after the header, each parsed on a worker thread while the last is consumed.

    pyarrow parses without the GIL, so the next block is ready by the time the caller (the
    engine, in Python) asks for it. Only checks that need the block alone run ahead; the time
    order across blocks and the line numbers are settled here, in file order.
    """
    line = 2
    last_t = -math.inf
    ahead: deque[tuple[_Span, Future[tuple[Rows | None, int]]]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording-read") as pool:

        def fill() -> None:
            while len(ahead) < _READ_AHEAD:
                raw = next(blocks, None)
                if raw is None:
                    return
                ahead.append((raw, pool.submit(_parse_block, raw)))

        fill()
        while ahead:
            raw, job = ahead.popleft()
            batch, lines = job.result()
            if lines < 0:  # a quote: a field may span blocks, so line by line to the end
                rest = [r for r, _ in ahead]
                for _, queued in ahead:
                    queued.cancel()
                ahead.clear()
                tail = _texts_of(raw, itertools.chain(rest, blocks))
                yield from _slow(tail, file, line, last_t, header=False)
                return
            fill()
            if batch is None or (len(batch) and batch.t[0] < last_t):
                batch = _concat(list(_slow([raw.tobytes()], file, line, last_t, header=False)))
            if len(batch):
                last_t = float(batch.t[-1])
            yield batch
            line += lines


def _parse_block(raw: _Span) -> tuple[Rows | None, int]:
    """(the block's rows, or None for the line-by-line reader; its number of lines).

    The number of lines is -1 for a block with a quote character, which the line-by-line
    reader reads with all the blocks after it.
    """
    if raw.has(b'"'):
        return None, -1
    return _fast(raw), _count_lines(raw)


def _chain(block: _Span, blocks: Iterator[_Span]) -> Iterator[_Span]:
    yield block
    yield from blocks


def _texts_of(block: _Span, blocks: Iterator[_Span]) -> Iterator[bytes]:
    """The blocks as text for the line-by-line reader (copies: the rare path)."""
    return (b.tobytes() for b in _chain(block, blocks))


def _line_end(buf: _Span) -> int:
    """Index just past the first line of `buf` (its line end included)."""
    n, r = buf.find(b"\n"), buf.find(b"\r")
    if r >= 0 and (n < 0 or r < n):
        return r + 2 if buf.find(b"\n", r + 1, r + 2) == r + 1 else r + 1
    return n + 1 if n >= 0 else len(buf)


def _decode(raw: bytes, file: str, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        # the wording of alarms/replay.py's reader, so both say the same
        raise RecordingError(
            file,
            line,
            f"not UTF-8 text: byte 0x{byte:02x} is byte {exc.start + 1} of the line "
            "(save the file as UTF-8)",
        ) from None


def _check_header(raw: bytes, file: str) -> None:
    if not raw:
        raise RecordingError(file, 1, "empty file: expected header t,param,value")
    header = next(csv.reader([_decode(raw, file, 1)]), [])
    if tuple(h.strip() for h in header) != HEADER:
        raise RecordingError(file, 1, f"bad header {','.join(header)!r}: expected t,param,value")


# One thread per block: the blocks are parsed on the read-ahead thread while the engine runs,
# and pyarrow's own pool on top of it only contends for the same cores. A block is parsed as
# one chunk (pyarrow's `block_size` above ours), so its columns convert to numpy without a copy.
_READ: Final = pacsv.ReadOptions(column_names=list(HEADER), use_threads=False, block_size=1 << 30)
_PARSE: Final = pacsv.ParseOptions(quote_char=False, newlines_in_values=False)
_CONVERT: Final = pacsv.ConvertOptions(
    # `param` as plain text: parsing it straight into a dictionary costs more than looking the
    # names up afterwards (`index_in`); `value` as a number, parsed with the rest of the line:
    # an empty value is null (an invalid sample), and so is a session step's name, which
    # `_event_codes` then reads back from the text of its `EVENT` row
    column_types={"t": pa.float64(), "param": pa.string(), "value": pa.float64()},
    null_values=["", *(e.value for e in SessionEvent)],
    strings_can_be_null=False,
    # bytes that are not UTF-8 are no name of the vocabulary and no number: such a block goes
    # to the line-by-line reader, which names the line
    check_utf8=False,
)
_EVENT_BYTES: Final[dict[bytes, int]] = {n.encode(): c for n, c in _EVENT_CODE.items()}
_EVENT_NAME: Final = EVENT.encode()
# A byte in the name of every session step and in no number (as Python's `float` or pyarrow
# spell one) and no parameter: every row whose text holds it must be an `EVENT` row, so one
# `memchr` pass over a block finds them all, and a step's name in any other row (which would
# be read as a null value) sends the block to the line-by-line reader, which refuses it.
_STEP_BYTE: Final = bytes(
    [
        min(
            set.intersection(*(set(n) for n in _EVENT_BYTES))
            - set(b"0123456789+-._eEinfatyINFATY \t")
            - set("".join(p.value for p in Param).encode())
            - set(b"EVENT,")
        )
    ]
)


def _fast(block: _Span) -> Rows | None:
    """The rows of a block of whole lines, or None if a line needs the line-by-line reader."""
    try:
        # read in place (a BufferReader over a view); the stubs know only Python files
        source: Any = pa.BufferReader(block.view())
        table = pacsv.read_csv(source, _READ, _PARSE, _CONVERT)
    except pa.ArrowInvalid:
        return None
    t = table.column("t").to_numpy()
    what = _param_codes(table.column("param"))
    # the order across blocks is `_read_ahead`'s to check, in file order
    in_order = not len(t) or (np.isfinite(t).all() and (t[1:] >= t[:-1]).all())
    if not in_order or (what == _UNKNOWN).any():
        return None
    value = table.column("value")
    v = _to_float(value)
    # pyarrow also reads `nan(1)` as NaN, which Python's `float` refuses: a NaN written as
    # text (not an empty value) in a block with a parenthesis goes to the line-by-line reader
    if block.has(b"(") and np.count_nonzero(np.isnan(v)) > value.null_count:
        return None
    if np.isinf(v).any():
        return None
    events = np.flatnonzero(what == _IS_EVENT)
    codes = _event_codes(block)
    if codes is None or len(codes) != len(events):
        return None  # a step's name outside an `EVENT` row, or an `EVENT` row without one
    if len(events):
        # a step's name was read as a null value: NaN already, an invalid sample's value
        what[events] = codes
    return _rows(t, what, v)


def _event_codes(block: _Span) -> list[int] | None:
    """The step of each `EVENT` row of the block, in order; None if a row is not as expected.

    Every row holding `_STEP_BYTE` must be `t,EVENT,<step>`; the rows of steps are few.
    """
    codes: list[int] = []
    at = block.find(_STEP_BYTE)
    while at >= 0:
        lo = block.rfind(b"\n", 0, at) + 1
        hi = block.find(b"\n", at)
        hi = len(block) if hi < 0 else hi
        fields = block.tobytes(lo, hi).rstrip(b"\r").split(b",")
        if len(fields) != len(HEADER) or fields[1] != _EVENT_NAME:
            return None
        code = _EVENT_BYTES.get(fields[2])
        if code is None:
            return None
        codes.append(code)
        at = block.find(_STEP_BYTE, hi)
    return codes


def _param_codes(param: pa.ChunkedArray[Any]) -> np.ndarray:
    """Codes of `_CODES` for the param column; `_IS_EVENT` for `EVENT`, `_UNKNOWN` otherwise."""
    parts = []
    for chunk in param.chunks:
        if pa.types.is_dictionary(chunk.type):
            coded = cast("pa.DictionaryArray[Any, Any]", chunk)
            names = coded.dictionary.to_pylist()
            lut = np.array([_lookup(n) for n in names] or [0], dtype=np.int16)
            parts.append(lut[coded.indices.to_numpy(zero_copy_only=False)])
        else:
            found: pa.Array[Any] = pc.index_in(chunk, value_set=_NAMES)
            if found.null_count:  # a name not in the vocabulary (the rare case): mark it
                found = found.fill_null(len(_NAMES))
            parts.append(_NAME_CODES[found.to_numpy(zero_copy_only=False)])
    return np.concatenate(parts) if parts else np.empty(0, np.int16)


def _lookup(name: object) -> int:
    if name == EVENT:
        return _IS_EVENT
    return _CODE.get(name, _UNKNOWN) if isinstance(name, str) else _UNKNOWN


_NAMES: Final = pa.array([*_CODE, EVENT], pa.string())
# the code of each name of `_NAMES`, then `_UNKNOWN` for a name not among them
_NAME_CODES: Final = np.array([*_CODE.values(), _IS_EVENT, _UNKNOWN], dtype=np.int16)


def _values(
    what: np.ndarray, t: np.ndarray, value: pa.ChunkedArray[Any] | pa.Array[Any]
) -> Rows | None:
    """The batch, given param codes and the value column (text or numbers); None if refused."""
    events = np.flatnonzero(what == _IS_EVENT)
    if len(events):
        names = pc.take(value, events.tolist()).to_pylist()
        codes = [_EVENT_CODE.get(n, _UNKNOWN) if isinstance(n, str) else _UNKNOWN for n in names]
        if _UNKNOWN in codes:
            return None
        what = what.copy()
        what[events] = codes
    is_text = pa.types.is_string(value.type) or pa.types.is_large_string(value.type)
    blank: Any = None
    if is_text:
        blank = pc.equal(value, pa.scalar(""))
        if len(events):
            mask = np.zeros(len(what), bool)
            mask[events] = True
            blank = pc.or_(blank, pa.array(mask))
        try:
            cleared = pc.if_else(blank, pa.scalar(None, value.type), value)
            number: pa.ChunkedArray[Any] | pa.Array[Any] = cast(
                "pa.Array[Any]", pc.cast(cleared, pa.float64())
            )
        except pa.ArrowInvalid:
            return None
    elif pa.types.is_floating(value.type) or pa.types.is_integer(value.type):
        number = cast("pa.Array[Any]", pc.cast(value, pa.float64()))
    else:
        return None
    v = _to_float(number)
    if np.isinf(v).any():
        return None
    if is_text and not _nan_spellings_ok(v, blank, value):
        return None
    return _rows(t, what, v)


_PYTHON_NANS: Final = frozenset({"nan", "+nan", "-nan"})


def _nan_spellings_ok(
    v: np.ndarray,
    blank: pa.ChunkedArray[Any] | pa.Array[Any],
    value: pa.ChunkedArray[Any] | pa.Array[Any],
) -> bool:
    """Whether every NaN that pyarrow read from text is one Python's `float` reads too.

    pyarrow also takes `nan(1)`, which the line-by-line reader refuses; such rows are rare
    enough (an invalid sample is normally written empty) to check one by one.
    """
    written = np.isnan(v) & ~_to_bool(blank)
    if not written.any():
        return True
    texts = pc.take(value, np.flatnonzero(written).tolist()).to_pylist()
    return all(isinstance(x, str) and x.lower() in _PYTHON_NANS for x in texts)


def _to_bool(array: pa.ChunkedArray[Any] | pa.Array[Any]) -> np.ndarray:
    whole: pa.Array[Any] = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    out: np.ndarray = whole.to_numpy(zero_copy_only=False)
    return out


def _to_float(array: pa.ChunkedArray[Any] | pa.Array[Any]) -> np.ndarray:
    """A float64 column as numpy, nulls as NaN."""
    whole: pa.Array[Any] = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    filled: pa.Array[Any] = whole.fill_null(math.nan) if whole.null_count else whole
    out: np.ndarray = filled.to_numpy(zero_copy_only=False)
    return out


def _slow(
    blocks: Iterable[bytes], file: str, first_line: int, last_t: float, *, header: bool
) -> Iterator[Rows]:
    """Rows read line by line with Python's `csv` (the reference semantics), in batches."""
    reader = csv.reader(_lines(blocks, file, first_line))
    line0 = first_line - 1
    if header:
        _slow_header(reader, file)
    rows: list[tuple[float, int, float]] = []
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RecordingError(file, line0 + reader.line_num, f"not CSV: {exc}") from None
        if not fields or fields == [""]:
            continue
        line = line0 + reader.line_num
        if len(fields) != len(HEADER):
            raise RecordingError(file, line, f"expected 3 fields, got {len(fields)}")
        rows.append(_parse(*(f.strip() for f in fields), file=file, line=line, last_t=last_t))
        last_t = rows[-1][0]
        if len(rows) >= _SLOW_BATCH:
            yield _rows_of(rows)
            rows = []
    yield _rows_of(rows)


def _rows_of(rows: list[tuple[float, int, float]]) -> Rows:
    t, what, value = zip(*rows, strict=True) if rows else ((), (), ())
    return _rows(np.array(t, np.float64), np.array(what, np.int8), np.array(value, np.float64))


def _slow_header(reader: Iterator[list[str]], file: str) -> None:
    try:
        fields = next(reader)
    except StopIteration:
        raise RecordingError(file, 1, "empty file: expected header t,param,value") from None
    except csv.Error as exc:
        raise RecordingError(file, 1, f"not CSV: {exc}") from None
    if tuple(h.strip() for h in fields) != HEADER:
        raise RecordingError(file, 1, f"bad header {','.join(fields)!r}: expected t,param,value")


def _lines(blocks: Iterable[bytes], file: str, first_line: int) -> Iterator[str]:
    """Decoded lines, split as Python's universal newlines split them, each line checked."""
    line = first_line
    for block in blocks:
        for raw in block.splitlines(keepends=True):
            yield _decode(raw, file, line)
            line += 1


def _parse(
    t_text: str, param_text: str, value_text: str, *, file: str, line: int, last_t: float
) -> tuple[float, int, float]:
    """One row's fields (stripped) as (t, code, value), or the error of the line."""
    row = _fields(t_text, param_text, value_text, file=file, line=line)
    if row[0] < last_t:
        raise RecordingError(file, line, f"time {row[0]!r} is earlier than the row before it")
    return row


def _fields(
    t_text: str, param_text: str, value_text: str, *, file: str, line: int
) -> tuple[float, int, float]:
    try:
        t = float(t_text)
    except ValueError:
        raise RecordingError(file, line, f"time {t_text!r} is not a number") from None
    if not math.isfinite(t):
        raise RecordingError(file, line, f"time {t_text!r} is not finite")
    if param_text == EVENT:
        code = _EVENT_CODE.get(value_text)
        if code is None:
            known = ", ".join(e.value for e in SessionEvent)
            raise RecordingError(file, line, f"unknown event {value_text!r} (known: {known})")
        return t, code, math.nan
    param = _CODE.get(param_text)
    if param is None:
        raise RecordingError(file, line, f"unknown parameter {param_text!r}")
    if value_text == "" or value_text.lower() == "nan":
        return t, param, math.nan
    try:
        value = float(value_text)
    except ValueError:
        raise RecordingError(file, line, f"value {value_text!r} is not a number") from None
    if math.isinf(value):
        raise RecordingError(file, line, f"value {value_text!r} is not finite")
    return t, param, value


def _read_parquet(f: BinaryIO, file: str) -> Iterator[Rows]:
    try:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise RecordingError(file, 1, f"not a Parquet file: {exc}") from None
    if not set(HEADER) <= set(names):
        raise RecordingError(
            file, 1, f"bad header {','.join(names)!r}: expected columns t,param,value"
        )
    row = 0
    last_t = -math.inf
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=list(HEADER)):
        rows = _fast_parquet(batch, last_t)
        if rows is None:
            rows = _slow_parquet(batch, file, row, last_t)
        if len(rows):
            last_t = float(rows.t[-1])
        row += batch.num_rows
        yield rows


def _fast_parquet(batch: pa.RecordBatch, last_t: float) -> Rows | None:
    t_col = batch.column("t")
    if not (pa.types.is_floating(t_col.type) or pa.types.is_integer(t_col.type)):
        return None
    if batch.num_rows == 0:
        return _rows(np.empty(0), np.empty(0, np.int8), np.empty(0))
    t = _to_float(pc.cast(t_col, pa.float64()))
    if not np.isfinite(t).all() or t[0] < last_t or (t[1:] < t[:-1]).any():
        return None
    param = batch.column("param")
    if not (pa.types.is_dictionary(param.type) or pa.types.is_string(param.type)):
        return None
    what = _param_codes(pa.chunked_array([param]))
    if (what == _UNKNOWN).any():
        return None
    return _values(what, t, batch.column("value"))


def _slow_parquet(batch: pa.RecordBatch, file: str, first_row: int, last_t: float) -> Rows:
    """The batch checked row by row: its first bad row raises, named as its CSV line would be."""
    rows: list[tuple[float, int, float]] = []
    columns = (batch.column(name).to_pylist() for name in HEADER)
    for k, fields in enumerate(zip(*columns, strict=True)):
        line = first_row + k + 2  # the line this row has in the CSV (header on line 1)
        rows.append(_parse(*(_text(x) for x in fields), file=file, line=line, last_t=last_t))
        last_t = rows[-1][0]
    return _rows_of(rows)


def _text(x: object) -> str:
    if x is None:
        return ""
    if isinstance(x, str):
        return x.strip()
    if isinstance(x, float):
        return "nan" if math.isnan(x) else repr(x)
    return str(x)


# ---------------------------------------------------------------------------------- writing

RowLike = tuple[float, Param | SessionEvent, float]


def format_number(x: float) -> str:
    """`x` as recording text: integer form when whole, else `repr`; `float()` reads it back exactly.

    Raises `ValueError` for NaN and infinities, which are not numbers a recording can carry.
    """
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    if x.is_integer():
        return str(int(x))
    return repr(float(x))


def _row(item: RowLike | ScenarioItem) -> RowLike:
    if isinstance(item, Step):
        return item.t, item.event, math.nan
    if isinstance(item, Sample):
        return item.t, item.param, item.value if item.valid else math.nan
    return item


def _texts(rows: Rows | Iterable[RowLike | ScenarioItem]) -> Iterator[tuple[str, str, str]]:
    """(t, param, value) texts of each row; a value that is NaN, infinite or invalid is empty."""
    if isinstance(rows, Rows):
        items: Iterable[RowLike] = (
            (t, _CODES[w], v if ok else math.nan)
            for t, w, v, ok in zip(
                rows.t.tolist(),
                rows.what.tolist(),
                rows.value.tolist(),
                rows.valid.tolist(),
                strict=True,
            )
        )
    else:
        items = map(_row, rows)
    for t, what, value in items:
        if isinstance(what, SessionEvent):
            yield format_number(t), EVENT, what.value
        else:
            yield format_number(t), what.value, format_number(value) if math.isfinite(value) else ""


def write_recording(
    rows: Rows | Iterable[RowLike | ScenarioItem], path_or_file: str | os.PathLike[str] | TextIO
) -> int:
    """Write `rows`, in the order given, as a recording CSV; return the number of data rows.

    `rows` is a batch, or (t, param or session step, value) tuples (a NaN value for an invalid
    sample), or samples and `Step`s as scenarios and `vigil export` make them (an invalid sample
    has an empty value). This is the one writer, beside the one reader (`read_recording`).
    `path_or_file` is a path (the file is created or replaced, UTF-8, LF line ends) or an
    open text file (written to, not closed; open it with `newline=""`). Rows should already be
    in time order: the format requires it and this function does not reorder.
    """
    if isinstance(path_or_file, str | os.PathLike):
        with Path(path_or_file).open("w", encoding="utf-8", newline="") as f:
            return _write(rows, f)
    return _write(rows, path_or_file)


def _write(rows: Rows | Iterable[RowLike | ScenarioItem], f: TextIO) -> int:
    # No field of the format needs quoting (numbers, vocabulary names), so rows are joined as
    # they are: the same text `csv.writer` gives, faster.
    f.write(",".join(HEADER) + "\n")
    n = 0
    lines: list[str] = []
    for texts in _texts(rows):
        lines.append(",".join(texts))
        n += 1
        if len(lines) >= _SLOW_BATCH:
            f.write("\n".join(lines) + "\n")
            lines.clear()
    if lines:
        f.write("\n".join(lines) + "\n")
    return n


def write_parquet(batches: Rows | Iterable[Rows], path: str | os.PathLike[str]) -> int:
    """Write batches as a Parquet recording (`value` the CSV's text); return the number of rows."""
    columns: Any = {"t": pa.float64(), "param": pa.string(), "value": pa.string()}
    schema = pa.schema(columns)
    n = 0
    with pq.ParquetWriter(os.fspath(path), schema) as writer:
        for batch in [batches] if isinstance(batches, Rows) else batches:
            texts = list(_texts(batch))
            table = pa.table(
                {
                    "t": pa.array(batch.t, pa.float64()),
                    "param": pa.array([p for _, p, _ in texts], pa.string()),
                    "value": pa.array([v for _, _, v in texts], pa.string()),
                },
                schema=schema,
            )
            writer.write_table(table)
            n += len(texts)
    return n
