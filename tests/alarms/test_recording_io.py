"""alarms/recording_io.py: the columnar recording reader and writer (issue 12, part 3).

The line-by-line reader of alarms/replay.py is the oracle: on every recording of the repository
and on random text the new reader must give the same rows, or the same error at the same line.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.engine import Rows
from alarms.recording_io import (
    RecordingError,
    read_all,
    read_recording,
    write_parquet,
    write_recording,
)
from kernel.vocabulary import Param, SessionEvent
from tests.alarms.reference_reader import read_recording as old_read_recording

RECORDINGS = Path(__file__).resolve().parents[2] / "config" / "recordings"
CSVS = sorted(RECORDINGS.glob("*.csv"))
CODES: list[Param | SessionEvent] = [*Param, *SessionEvent]
KNOWN = "session_start, infusion_start, infusion_stop, discharge"


def old_rows(text: str) -> Rows:
    rows = list(old_read_recording(io.StringIO(text, newline=""), file="f.csv"))
    return Rows(
        t=np.array([r.t for r in rows], np.float64),
        what=np.array([CODES.index(r.what) for r in rows], np.int8),
        value=np.array([r.value for r in rows], np.float64),
        valid=np.array([not math.isnan(r.value) for r in rows], bool),
    )


def new_rows(data: bytes, block_size: int = 1 << 24, *, via: str = "stream") -> Rows:
    """The rows as read from a stream (blocks read into memory) or a file (mapped)."""
    if via == "stream":
        batches = list(read_recording(io.BytesIO(data), file="f.csv", block_size=block_size))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "f.csv"
            path.write_bytes(data)
            with path.open("rb") as f:
                batches = list(read_recording(f, file="f.csv", block_size=block_size))
    return Rows(
        t=np.concatenate([b.t for b in batches]),
        what=np.concatenate([b.what for b in batches]),
        value=np.concatenate([b.value for b in batches]),
        valid=np.concatenate([b.valid for b in batches]),
    )


def assert_same(a: Rows, b: Rows) -> None:
    assert a.t.dtype == b.t.dtype == np.float64
    assert a.what.dtype == b.what.dtype == np.int8
    assert a.valid.dtype == b.valid.dtype == bool
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.what, b.what)
    np.testing.assert_array_equal(a.value, b.value)  # NaN equals NaN here
    np.testing.assert_array_equal(a.valid, b.valid)


def error_of(data: bytes, block_size: int = 1 << 24, *, via: str = "stream") -> str:
    with pytest.raises(RecordingError) as info:
        new_rows(data, block_size, via=via)
    return str(info.value)


# ------------------------------------------------------------------- the repository's files


@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.name)
@pytest.mark.parametrize("block_size", [1 << 24, 4096, 97])
@pytest.mark.parametrize("via", ["stream", "file"])
def test_repository_recordings_read_as_the_old_reader_reads_them(
    path: Path, block_size: int, via: str
) -> None:
    data = path.read_bytes()
    assert_same(new_rows(data, block_size, via=via), old_rows(data.decode("utf-8")))


@pytest.mark.parametrize("path", CSVS, ids=lambda p: p.name)
def test_path_reading_and_writing_back_gives_the_same_bytes(path: Path, tmp_path: Path) -> None:
    rows = read_all(path)
    out = tmp_path / "again.csv"
    assert write_recording(rows, out) == len(rows) == 31558
    assert out.read_bytes() == path.read_bytes()


def test_small_blocks_stream_in_many_batches() -> None:
    batches = list(read_recording(CSVS[0], block_size=4096))
    assert len(batches) > 100
    # a block of 4 KiB holds no more than ~300 rows of ~15 bytes
    assert max(len(b) for b in batches) < 400


# ------------------------------------------------------------------------------ round trips


def test_parquet_round_trip(tmp_path: Path) -> None:
    rows = read_all(CSVS[1])
    assert write_parquet(rows, tmp_path / "r.parquet") == len(rows)
    assert_same(read_all(tmp_path / "r.parquet"), rows)
    # the same reader, from an open file, recognises Parquet by its magic bytes
    with (tmp_path / "r.parquet").open("rb") as f:
        assert_same(read_all(f), rows)


def test_parquet_of_many_batches_round_trips(tmp_path: Path) -> None:
    rows = read_all(CSVS[0])
    chunks = list(read_recording(CSVS[0], block_size=50_000))
    assert len(chunks) > 5
    write_parquet(chunks, tmp_path / "r.parquet")
    assert_same(read_all(tmp_path / "r.parquet"), rows)


def test_numeric_parquet_values_are_read(tmp_path: Path) -> None:
    table = pa.table({"t": [1.0, 2.0, 3.0], "param": ["HR", "SPO2", "HR"], "value": [70, None, 72]})
    pq.write_table(table, tmp_path / "n.parquet")
    rows = read_all(tmp_path / "n.parquet")
    np.testing.assert_array_equal(rows.value, [70.0, math.nan, 72.0])
    np.testing.assert_array_equal(rows.valid, [True, False, True])
    np.testing.assert_array_equal(rows.what, [0, 2, 0])


def test_parquet_errors_name_the_row_as_its_csv_line(tmp_path: Path) -> None:
    table = pa.table(
        {"t": [1.0, 2.0, 1.5], "param": ["HR", "EVENT", "HR"], "value": ["70", "session_start", ""]}
    )
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(RecordingError) as info:
        read_all(tmp_path / "p.parquet")
    assert info.value.file == str(tmp_path / "p.parquet")
    assert info.value.line == 4
    assert info.value.reason == "time 1.5 is earlier than the row before it"
    pq.write_table(pa.table({"t": [1.0], "kind": ["HR"]}), tmp_path / "q.parquet")
    with pytest.raises(RecordingError, match=r"q.parquet:1: bad header 't,kind'"):
        read_all(tmp_path / "q.parquet")


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def recordings(draw: st.DrawFn) -> list[tuple[float, Param | SessionEvent, float]]:
    times = sorted(draw(st.lists(st.floats(0, 4e9, allow_nan=False), max_size=60)))
    out: list[tuple[float, Param | SessionEvent, float]] = []
    for t in times:
        what = draw(st.sampled_from(CODES))
        value = math.nan if isinstance(what, SessionEvent) else draw(finite | st.just(math.nan))
        out.append((t, what, value))
    return out


@settings(max_examples=150, deadline=None)
@given(rows=recordings(), block_size=st.sampled_from([7, 64, 1 << 20]))
def test_written_rows_read_back_equal(
    rows: list[tuple[float, Param | SessionEvent, float]], block_size: int
) -> None:
    buf = io.StringIO(newline="")
    assert write_recording(rows, buf) == len(rows)
    got = new_rows(buf.getvalue().encode(), block_size)
    np.testing.assert_array_equal(got.t, [t for t, _, _ in rows])
    np.testing.assert_array_equal(got.what, [CODES.index(w) for _, w, _ in rows])
    np.testing.assert_array_equal(got.value, [v for _, _, v in rows])
    np.testing.assert_array_equal(got.valid, [not math.isnan(v) for _, _, v in rows])


# --------------------------------------------------------------------------- bad recordings

H = "t,param,value\n"
# (file text, the message expected, word for word; the old reader must say the same)
BAD: list[tuple[str, str]] = [
    ("", "f.csv:1: empty file: expected header t,param,value"),
    (
        "time,param,value\n1,HR,70\n",
        "f.csv:1: bad header 'time,param,value': expected t,param,value",
    ),
    (H + "1,HR,70\n2,HR\n", "f.csv:3: expected 3 fields, got 2"),
    (H + "1,HR,70,1\n", "f.csv:2: expected 3 fields, got 4"),
    (H + "1,HR,70\nx,HR,70\n", "f.csv:3: time 'x' is not a number"),
    (H + "1,HR,70\n,HR,70\n", "f.csv:3: time '' is not a number"),
    (H + "1,HR,70\ninf,HR,70\n", "f.csv:3: time 'inf' is not finite"),
    (H + "1,HR,70\nnan,HR,70\n", "f.csv:3: time 'nan' is not finite"),
    (H + "1,EVENT,lunch\n", f"f.csv:2: unknown event 'lunch' (known: {KNOWN})"),
    (H + "1,HR,70\n2,BPM,70\n", "f.csv:3: unknown parameter 'BPM'"),
    (H + "1,hr,70\n", "f.csv:2: unknown parameter 'hr'"),
    (H + "1,HR,seventy\n", "f.csv:2: value 'seventy' is not a number"),
    # a step's name where a number belongs, and an `EVENT` row with a number for a step
    (H + "1,HR,70\n2,HR,discharge\n", "f.csv:3: value 'discharge' is not a number"),
    (H + "1,EVENT,session_start\n2,EVENT,5\n", f"f.csv:3: unknown event '5' (known: {KNOWN})"),
    (
        H + "1,EVENT,session_start\n2,SPO2,infusion_stop\n",
        "f.csv:3: value 'infusion_stop' is not a number",
    ),
    (H + "1,HR,NA\n", "f.csv:2: value 'NA' is not a number"),
    (H + "1,HR,inf\n", "f.csv:2: value 'inf' is not finite"),
    (H + "1,HR,-Infinity\n", "f.csv:2: value '-Infinity' is not finite"),
    (H + "2,HR,70\n1,HR,70\n", "f.csv:3: time 1.0 is earlier than the row before it"),
    # blank lines are skipped, and counted
    (
        H + "\n\n1,HR,70\n\n3,HR,70\n\n2,SPO2,97\n",
        "f.csv:8: time 2.0 is earlier than the row before it",
    ),
    (H + "1,HR,70\r\n\r\n0,HR,70\r\n", "f.csv:4: time 0.0 is earlier than the row before it"),
    (H + "1,HR,70\n   \n", "f.csv:3: expected 3 fields, got 1"),
    # the first bad line wins, whatever is wrong further on
    (H + "1,HR,x\n0,BPM,inf\n", "f.csv:2: value 'x' is not a number"),
    # quoted fields: read line by line, a field spanning lines counted as Python counts it
    (H + '1,"HR",70\n2,"EV\nENT",x\n', "f.csv:4: unknown parameter 'EV\\nENT'"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
@pytest.mark.parametrize("block_size", [1 << 24, 5])
@pytest.mark.parametrize("via", ["stream", "file"])
def test_bad_recording_is_refused_at_its_line(
    text: str, message: str, block_size: int, via: str
) -> None:
    assert error_of(text.encode(), block_size, via=via) == message


@pytest.mark.parametrize(("text", "message"), BAD)
def test_the_old_reader_says_the_same(text: str, message: str) -> None:
    with pytest.raises(RecordingError) as info:
        old_rows(text)
    assert str(info.value) == message


def long_recording(n: int) -> str:
    return H + "".join(f"{i},{'HR' if i % 2 else 'SPO2'},{60 + i % 40}\n" for i in range(n))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("7000,BPM,70\n", "unknown parameter 'BPM'"),
        ("1,HR,70\n", "time 1.0 is earlier than the row before it"),
        ("7000,HR,fast\n", "value 'fast' is not a number"),
        ("7000,EVENT,\n", f"unknown event '' (known: {KNOWN})"),
        ("inf,HR,70\n", "time 'inf' is not finite"),
        ("7000,HR,70,70\n", "expected 3 fields, got 4"),
        (
            "7000,HR,70\xb0\n",
            "not UTF-8 text: byte 0xb0 is byte 11 of the line (save the file as UTF-8)",
        ),
    ],
)
@pytest.mark.parametrize("via", ["stream", "file"])
def test_error_in_a_later_block_after_blank_lines(bad: str, message: str, via: str) -> None:
    text = long_recording(5000) + "\n\n\n" + bad + "9000,HR,70\n"
    # header, 5000 rows, 3 blank lines: the bad row is on line 5005
    data = text.encode("latin-1")
    assert error_of(data, block_size=1000, via=via) == f"f.csv:5005: {message}"
    if "\xb0" not in bad:  # the old reader is given text; its decoding is not in question here
        with pytest.raises(RecordingError) as info:
            old_rows(text)
        assert str(info.value) == f"f.csv:5005: {message}"


def test_utf8_bom_is_accepted() -> None:
    data = (RECORDINGS / "normal-session.csv").read_bytes()
    assert_same(new_rows(b"\xef\xbb\xbf" + data), new_rows(data))
    assert_same(new_rows(b"\xef\xbb\xbf" + data, block_size=100), old_rows(data.decode()))


def test_a_bom_does_not_shift_line_numbers() -> None:
    assert error_of(b"\xef\xbb\xbf" + (H + "1,HR,x\n").encode()) == (
        "f.csv:2: value 'x' is not a number"
    )


@pytest.mark.parametrize("block_size", [1 << 24, 64])
def test_text_that_is_not_utf8_is_refused_at_its_line(block_size: int) -> None:
    data = (long_recording(40) + "\n41,HR,7\xb0\n").encode("latin-1")
    assert (
        error_of(data, block_size)
        == "f.csv:43: not UTF-8 text: byte 0xb0 is byte 8 of the line (save the file as UTF-8)"
    )


def test_a_bad_line_before_the_non_utf8_one_is_reported_first() -> None:
    data = (H + "1,HR,x\n2,HR,\xe9\n").encode("latin-1")
    assert error_of(data) == "f.csv:2: value 'x' is not a number"


def test_non_utf8_header_is_line_1() -> None:
    assert error_of("t,param,valu\xe9\n".encode("latin-1")) == (
        "f.csv:1: not UTF-8 text: byte 0xe9 is byte 13 of the line (save the file as UTF-8)"
    )


def test_a_path_names_itself_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(H + "1,HR,70\n1,XX,1\n", encoding="utf-8")
    with pytest.raises(RecordingError) as info:
        read_all(path)
    assert (info.value.file, info.value.line) == (str(path), 3)
    assert info.value.reason == "unknown parameter 'XX'"


def test_rows_pyarrow_refuses_but_python_reads_are_read() -> None:
    """Padded fields, underscores and quotes are the plain reader's business: same rows."""
    text = H + ' 1 , HR , 70 \n2,SPO2,1_0\n3,EVENT, session_start\n4,PR,NaN\n5,"PR",71\n'
    for block_size in (1 << 20, 3):
        rows = new_rows(text.encode(), block_size)
        assert_same(rows, old_rows(text))
        np.testing.assert_array_equal(rows.value, [70.0, 10.0, math.nan, math.nan, 71.0])


# Number spellings where pyarrow's parser and Python's `float` could disagree.
SPELLINGS = [
    ".", "-", "+", "e5", "1e+", "1.e5", "-.5", "+-1", "\u0663", "1e400", "-0", "0x1p3", "1E5",
    "infinity", "-Inf", "+nan", "-NaN", "nan(1)", "1d", "1f", "1 2", "\t1", "1\t", "\x0b1", "01",
    "1e-400", "9" * 400, "1.7976931348623159e308", "4.9e-324", "INF", "1_0",
]  # fmt: skip


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("where", ["t", "value"])
def test_number_spellings_read_as_python_reads_them(spelling: str, where: str) -> None:
    text = H + (f"{spelling},HR,70\n" if where == "t" else f"1,HR,{spelling}\n")
    try:
        expected: Rows | str = old_rows(text)
    except RecordingError as exc:
        expected = str(exc)
    try:
        got: Rows | str = new_rows(text.encode())
    except RecordingError as exc:
        got = str(exc)
    if isinstance(expected, str) or isinstance(got, str):
        assert got == expected
    else:
        assert_same(got, expected)


# Text made of the pieces recordings are made of, glued at random: new and old must agree.
PIECES = [
    "1", "2", "0", ".5", "e3", "-", "+", "inf", "nan", "NaN", "_", " ", "HR", "SPO2", "PR",
    "NIBP_SYS", "EVENT", "session_start", "discharge", "x", ",", ",", ",", "\n", "\n", "\r\n",
    "\r", '"', "(", ")", "Infinity", "\t", "\x0b", "\u0663", "s", "infusion_stop", ",EVENT,",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(st.lists(st.sampled_from(PIECES), max_size=8).map("".join), max_size=12),
    block_size=st.sampled_from([1, 16, 1 << 20]),
    via=st.sampled_from(["stream", "file"]),
)
def test_random_text_reads_as_the_old_reader_reads_it(
    lines: list[str], block_size: int, via: str
) -> None:
    text = H + "\n".join(lines)
    try:
        expected: Rows | str = old_rows(text)
    except RecordingError as exc:
        expected = str(exc)
    try:
        got: Rows | str = new_rows(text.encode(), block_size, via=via)
    except RecordingError as exc:
        got = str(exc)
    if isinstance(expected, str) or isinstance(got, str):
        assert got == expected
    else:
        assert_same(got, expected)


def rss_file_kib() -> int:
    """The file-backed resident memory of this process (`RssFile`, Linux)."""
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("RssFile:"))


def test_a_mapped_file_is_not_kept_resident_behind_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write(H)
        for k in range(40):  # ~48 MiB
            f.write("".join(f"{k * 100_000 + i},HR,{60 + i % 40}\n" for i in range(100_000)))
    size = path.stat().st_size >> 10
    before = rss_file_kib()
    peak = rows = 0
    for batch in read_recording(path, block_size=1 << 20):
        rows += len(batch)
        peak = max(peak, rss_file_kib() - before)
    assert rows == 4_000_000
    # a handful of 1 MiB blocks mapped at a time, not the whole file
    assert size > 40_000
    assert peak < 12 * 1024, f"{peak} KiB of a {size} KiB file stayed mapped"


def test_a_file_of_only_a_bom_is_empty() -> None:
    assert error_of(b"\xef\xbb\xbf") == "f.csv:1: empty file: expected header t,param,value"


def test_a_header_alone_is_a_recording_without_rows() -> None:
    assert len(new_rows(b"t,param,value\n")) == 0
    assert len(new_rows(b"t,param,value")) == 0


def test_a_parquet_stream_that_cannot_seek_is_refused() -> None:
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            buffer[:4] = b"PAR1"
            return 4

    with pytest.raises(RecordingError, match=r"f\.csv:1: a Parquet recording must be a file"):
        list(read_recording(io.BufferedReader(Pipe()), file="f.csv"))
