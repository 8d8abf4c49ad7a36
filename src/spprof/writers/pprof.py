"""pprof's format: a gzip-compressed ``perftools.profiles.Profile`` protobuf.

``go tool pprof``, pprof's web UI, Grafana/Pyroscope and most continuous
profiling back ends read it. The message layout follows google/pprof's
``proto/profile.proto``; the encoder below is hand-written so that spprof does
not depend on the protobuf package for one small, stable schema.

Mapping onto the schema:

* one ``Function`` per (function name, file), ``start_line`` = the smallest
  line seen for it (the model does not record where a function is defined),
  ``system_name`` left empty so that pprof shows the name as written;
* one ``Location`` per (function, line), holding a single ``Line``; native
  frames (``native=True``) are in a ``Mapping`` per library (its path as the
  file name), with their source file and line where the library has line
  tables (else the library as file, no line); Python frames share one
  ``[python]``;
* one ``Sample`` per unique (thread, stack), ``location_id`` leaf first,
  values ``[samples, cpu nanoseconds]``, labelled ``thread_id`` (numeric) and
  ``thread_name`` (string, when known). Aggregating keeps the file
  proportional to unique stacks rather than to session length, and pprof sums
  equal samples anyway.

:func:`decode` reads such a file back into plain dicts (for tests and
debugging without Go).
"""

from __future__ import annotations

import gzip
import zlib
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from .._states import STATE_FRAMES, STATES

if TYPE_CHECKING:
    from .._aggregate import AggregatedProfile
    from .._model import Profile

__all__ = ["WRITER", "PprofWriter", "build_message", "decode"]

# Stacks with no Python frames still cost CPU; give them a visible frame so
# pprof's totals match the profile's.
NO_FRAMES = "<no Python frames>"
MAPPING_NAME = "[python]"
MAPPING_ID = 1

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

# -- encoding ---------------------------------------------------------------

# Nearly every varint written (field keys, string and location ids, counts)
# is below 128, so precomputed single bytes avoid most of the loop below.
_SMALL = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        # int64 fields carry negatives as their 64-bit two's complement.
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, n: int) -> bytes:
    # proto3 scalars equal to 0 are simply absent on the wire.
    return _key(field, 0) + _varint(n) if n else b""


def _len(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _packed(field: int, values) -> bytes:
    if not values:
        return b""
    return _len(field, b"".join(map(_varint, values)))


class _Strings:
    """The string table; index 0 must be the empty string."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}
        self.table: list[str] = [""]

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def _ns_since_epoch(dt: datetime) -> int:
    # Integer timedelta arithmetic: float timestamps lose nanosecond digits.
    # Naive datetimes are taken as local time, as datetime.timestamp() does.
    return (dt.astimezone(timezone.utc) - _EPOCH) // _US * 1000


def build_message(profile: Profile, *, merge_threads: bool = False) -> bytes:
    """The uncompressed ``Profile`` protobuf."""
    # Samples that say whether their thread held the GIL keep it as a label
    # (`go tool pprof -tagfocus=gil=released`: CPU outside the GIL).
    by_gil = any(profile._gil)
    agg: AggregatedProfile = profile.aggregate(by_gil=by_gil)
    if merge_threads:
        agg = agg.merged()
    interval_ns = profile.interval_ns
    strings = _Strings()

    # Function/location ids are assigned in first-seen order. Lookups are
    # keyed by id() of the stack tuple and of each Frame first: stacks and
    # frames are shared objects in a profile, and hashing a Frame runs a
    # Python-level __hash__, so this keeps the per-frame cost to one dict hit.
    # Everything keyed by id() stays alive through `agg` for this call.
    func_ids: dict[tuple[str, str], int] = {}
    func_start: list[int] = []  # smallest line per function, by id - 1
    func_names: list[tuple[str, str]] = []
    loc_ids: dict[tuple[int, int, int], int] = {}
    loc_list: list[tuple[int, int, int]] = []  # (function id, line, mapping id) by id - 1
    frame_loc: dict[int, int] = {}

    # Native frames (native=True) live in the library that holds them: a
    # mapping per library, named by its path, claiming its functions are
    # resolved; their locations have no line.
    native_maps: dict[str, int] = {}

    def location(fname: str, filename: str, line: int, library: str | None = None) -> int:
        mapping_id = MAPPING_ID
        if library is not None:
            mapping_id = native_maps.get(library) or native_maps.setdefault(
                library, MAPPING_ID + 1 + len(native_maps))
        fkey = (fname, filename)
        fid = func_ids.get(fkey)
        if fid is None:
            fid = func_ids[fkey] = len(func_names) + 1
            func_names.append(fkey)
            func_start.append(line)
        elif line > 0 and (line < func_start[fid - 1] or func_start[fid - 1] <= 0):
            # 0 means "unknown line" in the model, so it never wins.
            func_start[fid - 1] = line
        lkey = (fid, line, mapping_id)
        lid = loc_ids.get(lkey)
        if lid is None:
            lid = loc_ids[lkey] = len(loc_list) + 1
            loc_list.append(lkey)
        return lid

    stack_locs: dict[int, bytes] = {}

    def encoded_locations(frames) -> bytes:
        got = stack_locs.get(id(frames))
        if got is not None:
            return got
        ids = []
        for fr in reversed(frames):  # pprof wants the leaf first
            lid = frame_loc.get(id(fr))
            if lid is None:
                library = (fr.library or fr.filename) if fr.is_native else None
                lid = frame_loc[id(fr)] = location(fr.function_name, fr.filename, fr.lineno, library)
            ids.append(lid)
        if not ids:
            ids.append(location(NO_FRAMES, "", 0))
        got = stack_locs[id(frames)] = _packed(1, ids)
        return got

    # The thread's state, from the synthetic frames that show it (aggregate()
    # ends time off CPU in <idle> or <waiting for the GIL>; collections have
    # <gc>): `go tool pprof -tagfocus=state=idle`. Wall mode only: in CPU
    # mode every sample is on CPU.
    wall = profile.mode == "wall"
    k_state = strings("state") if wall else 0
    state_of_leaf = {label: state for state, label in STATE_FRAMES.items()}
    state_labels = {
        state: _len(3, _int(1, k_state) + _int(2, strings(state))) for state in STATES if wall
    }

    k_gil = strings("gil") if by_gil else 0
    gil_labels = {
        True: _len(3, _int(1, k_gil) + _int(2, strings("held"))) if by_gil else b"",
        False: _len(3, _int(1, k_gil) + _int(2, strings("released"))) if by_gil else b"",
        None: b"",
    }

    def state_label(frames) -> bytes:
        if not wall:
            return b""
        state = "cpu"
        if frames:
            state = state_of_leaf.get(frames[-1].function_name, "cpu")
            if state == "cpu" and any(f.function_name == "<gc>" and not f.filename for f in frames):
                state = "gc"
        return state_labels[state]

    # Labels are identical for every sample of a thread: encode once.
    label_cache: dict[int | None, bytes] = {}
    k_tid = k_tname = 0
    if not merge_threads:
        k_tid, k_tname = strings("thread_id"), strings("thread_name")

    def labels(tid: int | None) -> bytes:
        got = label_cache.get(tid)
        if got is None:
            got = b""
            if tid is not None:
                got = _len(3, _int(1, k_tid) + _int(3, tid))
                name = agg.thread_names.get(tid)
                if name:
                    got += _len(3, _int(1, k_tname) + _int(2, strings(name)))
            label_cache[tid] = got
        return got

    sample_type = _len(1, _int(1, strings("samples")) + _int(2, strings("count")))
    # The time the weights stand for: CPU time, or real time in wall mode
    # (whose off-CPU samples end in an <idle> or GIL-wait frame).
    cpu, nanoseconds = strings("wall" if profile.mode == "wall" else "cpu"), strings("nanoseconds")
    sample_type += _len(1, _int(1, cpu) + _int(2, nanoseconds))

    # One mapping that claims functions, files and lines are already
    # resolved; without it pprof invents one and tries to symbolize it
    # against a binary ("Main binary filename not available."). A name in
    # brackets marks it as not backed by a file, like "[vdso]".
    mapping = (
        _int(1, MAPPING_ID)
        + _int(5, strings(MAPPING_NAME))
        + _int(7, 1)  # has_functions
        + _int(8, 1)  # has_filenames
        + _int(9, 1)  # has_line_numbers
    )
    parts = [sample_type, _len(3, mapping)]
    append = parts.append
    for s in agg.stacks:
        body = (
            encoded_locations(s.frames)
            + _packed(2, (s.count, s.weight * interval_ns))
            + labels(s.thread_id)
            + state_label(s.frames)
            + gil_labels[s.holds_gil]
        )
        append(b"\x12" + _varint(len(body)) + body)  # field 2 (sample), wire 2

    # The libraries' mappings, now that the samples have met them all.
    for path, mid in native_maps.items():
        append(_len(3, _int(1, mid) + _int(5, strings(path)) + _int(7, 1) + _int(8, 1)))
    for lid, (fid, line, mid) in enumerate(loc_list, 1):
        line_msg = _int(1, fid) + _int(2, line)
        append(_len(4, _int(1, lid) + _int(2, mid) + _len(4, line_msg)))

    # Only ``name`` is set, not ``system_name``: pprof "demangles" a function
    # whose system name equals its name, and for anything with angle brackets
    # and no ".<" (``<lambda>``, ``<module> pkg.mod``, ``<gc>``) that means
    # cutting the bracketed part as if it were C++ template arguments, which
    # leaves an empty or partial name. A function with a name and no system
    # name counts as already demangled and is shown as written.
    for fid, (fname, filename) in enumerate(func_names, 1):
        append(
            _len(
                5,
                _int(1, fid)
                + _int(2, strings(fname))
                + _int(4, strings(filename))
                + _int(5, max(func_start[fid - 1], 0)),
            )
        )

    comments = [strings(c) for c in _comments(profile)]
    tail = (
        _int(9, _ns_since_epoch(profile.start_time))
        + _int(10, max(0, (profile.end_time - profile.start_time) // _US * 1000))
        + _len(11, _int(1, cpu) + _int(2, nanoseconds))
        + _int(12, interval_ns)
        + _packed(13, comments)
        + _int(14, cpu)
    )
    # The string table goes last so that every string above is interned.
    table = b"".join(_len(6, s.encode("utf-8", "surrogatepass")) for s in strings.table)
    return b"".join(parts) + table + tail


def _comments(profile: Profile) -> list[str]:
    out = ["spprof"]
    if profile.python_version:
        out.append(f"python {profile.python_version}")
    if profile.platform:
        out.append(f"platform {profile.platform}")
    out.append(f"interval {profile.interval_ms} ms")
    out.append(f"mode {profile.mode}")
    if profile.dropped_count:
        out.append(f"dropped samples {profile.dropped_count}")
    return out


class PprofWriter:
    name = "pprof"
    extension = ".pb.gz"

    def render(self, profile: Profile, *, merge_threads: bool = False, **_: object) -> bytes:
        """gzip'd protobuf. ``merge_threads=True`` folds all threads together
        and leaves out the thread labels."""
        # mtime=0 makes the output a pure function of the profile.
        return gzip.compress(build_message(profile, merge_threads=merge_threads), 6, mtime=0)


WRITER = PprofWriter()


# -- decoding ---------------------------------------------------------------

# message -> {field: (name, kind, repeated)}; kind is a message name or one of
# "int64", "uint64", "bool", "string", "bytes".
_SCHEMA: dict[str, dict[int, tuple[str, str, bool]]] = {
    "Profile": {
        1: ("sample_type", "ValueType", True),
        2: ("sample", "Sample", True),
        3: ("mapping", "Mapping", True),
        4: ("location", "Location", True),
        5: ("function", "Function", True),
        6: ("string_table", "string", True),
        7: ("drop_frames", "int64", False),
        8: ("keep_frames", "int64", False),
        9: ("time_nanos", "int64", False),
        10: ("duration_nanos", "int64", False),
        11: ("period_type", "ValueType", False),
        12: ("period", "int64", False),
        13: ("comment", "int64", True),
        14: ("default_sample_type", "int64", False),
        15: ("doc_url", "int64", False),
    },
    "ValueType": {1: ("type", "int64", False), 2: ("unit", "int64", False)},
    "Sample": {
        1: ("location_id", "uint64", True),
        2: ("value", "int64", True),
        3: ("label", "Label", True),
    },
    "Label": {
        1: ("key", "int64", False),
        2: ("str", "int64", False),
        3: ("num", "int64", False),
        4: ("num_unit", "int64", False),
    },
    "Mapping": {
        1: ("id", "uint64", False),
        2: ("memory_start", "uint64", False),
        3: ("memory_limit", "uint64", False),
        4: ("file_offset", "uint64", False),
        5: ("filename", "int64", False),
        6: ("build_id", "int64", False),
        7: ("has_functions", "bool", False),
        8: ("has_filenames", "bool", False),
        9: ("has_line_numbers", "bool", False),
        10: ("has_inline_frames", "bool", False),
    },
    "Location": {
        1: ("id", "uint64", False),
        2: ("mapping_id", "uint64", False),
        3: ("address", "uint64", False),
        4: ("line", "Line", True),
        5: ("is_folded", "bool", False),
    },
    "Line": {
        1: ("function_id", "uint64", False),
        2: ("line", "int64", False),
        3: ("column", "int64", False),
    },
    "Function": {
        1: ("id", "uint64", False),
        2: ("name", "int64", False),
        3: ("system_name", "int64", False),
        4: ("filename", "int64", False),
        5: ("start_line", "int64", False),
    },
}

_SCALARS = {"int64", "uint64", "bool"}


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def _scalar(kind: str, v: int) -> int | bool:
    if kind == "int64":
        v &= (1 << 64) - 1
        return v - (1 << 64) if v >= 1 << 63 else v
    if kind == "bool":
        return bool(v)
    return v


def _decode_message(data: bytes, message: str) -> dict:
    fields = _SCHEMA[message]
    out: dict = {}
    for name, kind, repeated in fields.values():
        out[name] = [] if repeated else ("" if kind == "string" else 0 if kind != "bool" else False)
        if not repeated and kind in _SCHEMA:
            out[name] = None
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        spec = fields.get(field)
        if wire == 0:
            v, pos = _read_varint(data, pos)
            if spec is not None:
                name, kind, repeated = spec
                if repeated:
                    out[name].append(_scalar(kind, v))
                else:
                    out[name] = _scalar(kind, v)
        elif wire == 2:
            n, pos = _read_varint(data, pos)
            chunk = data[pos : pos + n]
            if len(chunk) != n:
                raise ValueError("truncated length-delimited field")
            pos += n
            if spec is None:
                continue
            name, kind, repeated = spec
            if kind in _SCALARS:  # packed repeated scalars
                p = 0
                while p < n:
                    v, p = _read_varint(chunk, p)
                    out[name].append(_scalar(kind, v))
                continue
            if kind == "string":
                value = chunk.decode("utf-8", "surrogatepass")
            elif kind == "bytes":
                value = bytes(chunk)
            else:
                value = _decode_message(chunk, kind)
            if repeated:
                out[name].append(value)
            else:
                out[name] = value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if pos != end:
        raise ValueError("message overruns its buffer")
    return out


def decode(data: bytes) -> dict:
    """Parse a pprof file (gzip'd or not) into plain dicts and lists.

    Field names are profile.proto's; string fields stay indices into
    ``string_table``; absent scalars are 0 and absent sub-messages ``None``.
    """
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"not a valid gzip stream: {e}") from e
    return _decode_message(bytes(data), "Profile")
