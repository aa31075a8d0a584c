"""Sans-I/O codec for monitors that publish over MQTT: payload bytes in, `Sample`s out.

Two payload formats (`[[drivers]] format`, docs/ARCHITECTURE.md "Config file"):

- ``vigil``: one Sample JSON object per message (docs/ARCHITECTURE.md "Sample JSON line").
- ``vscapture``: the numeric export of VSCaptureMP (Philips IntelliVue), one JSON list of
  ``{Timestamp, Relativetimestamp, SystemLocalTime, PhysioID, Value, DeviceID}`` per poll
  (xeonfusion/VSCaptureMP ``Class1.cs`` ``ReadNumericObservationValue`` and
  ``ExportNumValListToMQTT``; docs/devices.md §1).

Contract (docs/DESIGN.md P1, P2): pure functions of their arguments, no I/O, no asyncio. Decoding
never raises on any payload: everything it cannot use is dropped and reported, one reason per
rejected item (`DropReason`), so the driver counts it and goes on with the next message.

A sample whose value lies outside the physiological range (docs/ALARMS.md "Vocabulary") is *kept*,
marked ``valid=False`` with ``reason="out_of_range"``, and counted in
`DecodeResult.out_of_range`: the alarm core treats it as an invalid sample, which breaks runs,
and keeping it means a live session and its replay see the same samples.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NoReturn, TypeGuard

from drivers.samples import judged
from kernel.vocabulary import MDC_CODES, UNITS, Param, Sample

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_T",
    "VSCAPTURE_PHYSIO_IDS",
    "DecodeResult",
    "DropReason",
    "decode_vigil",
    "decode_vscapture",
    "encode_vigil",
    "encode_vscapture",
]


class DropReason(StrEnum):
    """Why an item of a payload was rejected (the `reason` label of the drop counter)."""

    TOO_LARGE = "too_large"  # payload over MAX_PAYLOAD_BYTES, not even parsed
    NOT_JSON = "not_json"  # not UTF-8, not JSON (RFC 8259: NaN/Infinity are not JSON)
    NOT_OBJECT = "not_object"  # a payload (vigil) or list item (vscapture) that is no object
    NOT_LIST = "not_list"  # a vscapture payload that is no JSON list
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"  # a field of the wrong JSON type; strings are never coerced
    UNKNOWN_PARAM = "unknown_param"  # vigil `param` not in the vocabulary
    BAD_TIME = "bad_time"  # vigil `t` negative, non-finite or past MAX_T
    WRONG_UNIT = "wrong_unit"  # vigil `unit` that is not the vocabulary's unit of `param`
    WRONG_MDC = "wrong_mdc"  # vigil `mdc` that is not the vocabulary's code of `param`
    UNMAPPED_PHYSIO_ID = "unmapped_physio_id"  # vscapture numeric Vigil does not use
    SUPERSEDED = "superseded"  # vscapture impedance RR when the same poll has airway RR


# A VSCaptureMP poll of every numeric of a fully equipped monitor is a few kB; anything near this
# size is not a monitor talking, and parsing it would only cost time on the alarm path.
MAX_PAYLOAD_BYTES: Final = 1 << 20

# 9999-12-31T23:59:59Z: the last instant `vocabulary.iso8601` (datetime) can represent.
MAX_T: Final = 253402300799.0


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What one MQTT payload decoded to.

    Attributes:
        samples: the samples, in payload order, with the configured device_id.
        dropped: one `DropReason` per rejected item (a whole payload counts as one item when
            it cannot be parsed at all).
        out_of_range: how many of `samples` the device called valid although their value is
            outside the physiological range; they are delivered with ``valid=False`` and
            ``reason="out_of_range"``.
        retimed: (vscapture) how many of `samples` carry the receive time because their
            ``Timestamp`` was missing or unusable.
        device_id_mismatch: (vigil) how many of `samples` named another ``device_id`` than the
            configured one; the configured one was used.
    """

    samples: tuple[Sample, ...] = ()
    dropped: tuple[str, ...] = ()
    out_of_range: int = 0
    retimed: int = 0
    device_id_mismatch: int = 0


class _RejectedError(Exception):
    """Internal: one item is dropped for `reason` (never leaves this module)."""

    def __init__(self, reason: DropReason) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> NoReturn:
    # json accepts NaN, Infinity and -Infinity by default; RFC 8259 does not.
    raise ValueError(f"{name} is not JSON")


def _load_json(payload: bytes) -> Any:
    """The parsed payload; raises `_RejectedError` for anything that is not strict UTF-8 JSON."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _RejectedError(DropReason.TOO_LARGE)
    try:
        # decode explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32
        text = payload.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    # RecursionError: deeply nested arrays; ValueError: also integers past Python's digit limit
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _RejectedError(DropReason.NOT_JSON) from None


def _is_number(x: object) -> TypeGuard[int | float]:
    # bool is an int subclass in Python, but `true` is not a number in JSON
    return isinstance(x, int | float) and not isinstance(x, bool)


def _to_float(x: float) -> float:
    """A JSON number as float; integers too large for a float become ±inf, never an error."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


# --------------------------------------------------------------------------------------------
# vigil: Sample JSON
# --------------------------------------------------------------------------------------------

_VIGIL_REQUIRED: Final = ("t", "param", "value", "valid", "device_id")


def decode_vigil(payload: bytes, *, device_id: str) -> DecodeResult:
    """Decode one Sample JSON object, or a JSON array of them (docs/ARCHITECTURE.md "Sample JSON").

    Required: ``t`` (number, epoch seconds, 0 <= t <= MAX_T), ``param`` (a `Param` name),
    ``value`` (number or null), ``valid`` (bool), ``device_id`` (str). Optional: ``unit`` and
    ``mdc`` (must agree with the vocabulary for ``param``; filled in from it when absent or
    null), ``reason`` (str or null). Other keys (vendor fields) are ignored.

    An array carries several samples in one message (a monitor sending HR, PR and SpO2 of one
    second together, as VSCaptureMP does); each element is judged on its own, so one bad
    element drops only itself.

    The sample gets the configured `device_id`: the topic, chosen in the bed's config, says
    which monitor this is. A payload that names another device is still delivered, and
    counted in `DecodeResult.device_id_mismatch` so that a topic shared by two monitors shows.

    A null value gives ``valid=False``, ``reason="no_value"``; a value outside the
    physiological range gives ``valid=False``, ``reason="out_of_range"`` (counted) unless the
    device already called the sample invalid, whose reason then stands.

    Never raises: a rejected item yields no sample and exactly one drop reason.
    """
    try:
        doc = _load_json(payload)
    except _RejectedError as exc:
        return DecodeResult(dropped=(exc.reason.value,))
    samples: list[Sample] = []
    dropped: list[str] = []
    out_of_range = mismatch = 0
    for item in doc if isinstance(doc, list) else [doc]:
        try:
            sample, bad_range, other_id = _vigil_sample(item, device_id)
        except _RejectedError as exc:
            dropped.append(exc.reason.value)
            continue
        samples.append(sample)
        out_of_range += bad_range
        mismatch += other_id
    if isinstance(doc, list) and not doc:
        dropped.append(DropReason.NOT_OBJECT.value)
    return DecodeResult(
        samples=tuple(samples),
        dropped=tuple(dropped),
        out_of_range=out_of_range,
        device_id_mismatch=mismatch,
    )


def _vigil_sample(doc: object, device_id: str) -> tuple[Sample, bool, bool]:
    """(sample, out_of_range, device_id_mismatch) of a parsed payload."""
    if not isinstance(doc, dict):
        raise _RejectedError(DropReason.NOT_OBJECT)
    if any(key not in doc for key in _VIGIL_REQUIRED):
        raise _RejectedError(DropReason.MISSING_FIELD)
    t, param_name, value, valid = doc["t"], doc["param"], doc["value"], doc["valid"]
    unit, mdc, reason = doc.get("unit"), doc.get("mdc"), doc.get("reason")
    if not (
        _is_number(t)
        and isinstance(param_name, str)
        and (value is None or _is_number(value))
        and isinstance(valid, bool)
        and isinstance(doc["device_id"], str)
        and (unit is None or isinstance(unit, str))
        and (mdc is None or (isinstance(mdc, int) and not isinstance(mdc, bool)))
        and (reason is None or (isinstance(reason, str) and _is_utf8(reason)))
    ):
        raise _RejectedError(DropReason.WRONG_TYPE)
    try:
        param = Param(param_name)
    except ValueError:
        raise _RejectedError(DropReason.UNKNOWN_PARAM) from None
    t = _to_float(t)
    if not 0.0 <= t <= MAX_T:  # also false for NaN
        raise _RejectedError(DropReason.BAD_TIME)
    # A unit or code that disagrees with the vocabulary means the publisher means something else
    # (a kPa ETCO2, another parameter): using the number would be worse than not having it.
    if unit is not None and unit != UNITS[param]:
        raise _RejectedError(DropReason.WRONG_UNIT)
    if mdc is not None and mdc != MDC_CODES[param]:
        raise _RejectedError(DropReason.WRONG_MDC)
    number = math.nan if value is None else _to_float(value)
    sample, out_of_range = judged(t, param, number, device_id, valid=valid, reason=reason)
    return sample, out_of_range, doc["device_id"] != device_id


def _is_utf8(s: str) -> bool:
    # JSON "\ud800" escapes give lone surrogates, which the journal could not store
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_vigil(sample: Sample) -> bytes:
    """The Sample JSON payload of `sample` (compact UTF-8); `decode_vigil` reads it back.

    Raises:
        ValueError: `sample.t` is not finite.
    """
    return json.dumps(sample.to_json(), separators=(",", ":"), allow_nan=False).encode()


# --------------------------------------------------------------------------------------------
# vscapture: VSCaptureMP numeric export
# --------------------------------------------------------------------------------------------

# PhysioID -> Param. VSCaptureMP writes the C# enum member name of the IntelliVue nomenclature
# code (`Enum.GetName(typeof(IntelliVue.AlertSource), physio_id)`, enum in `Class2.cs`), so the
# keys are the Philips NOM_ names; hex is the 16-bit code the monitor sends.
VSCAPTURE_PHYSIO_IDS: Final[dict[str, Param]] = {
    "NOM_ECG_CARD_BEAT_RATE": Param.HR,  # 0x4182 ECG heart rate
    "NOM_PLETH_PULS_RATE": Param.PR,  # 0x4822 pulse rate from the pleth (oximeter)
    "NOM_PULS_OXIM_SAT_O2": Param.SPO2,  # 0x4BB8 SpO2
    "NOM_PRESS_BLD_NONINV_SYS": Param.NIBP_SYS,  # 0x4A05 NBP
    "NOM_PRESS_BLD_NONINV_DIA": Param.NIBP_DIA,  # 0x4A06
    "NOM_PRESS_BLD_NONINV_MEAN": Param.NIBP_MEAN,  # 0x4A07
    "NOM_PRESS_BLD_ART_ABP_SYS": Param.ABP_SYS,  # 0x4A15 arterial line labelled "ABP"
    "NOM_PRESS_BLD_ART_ABP_DIA": Param.ABP_DIA,  # 0x4A16
    "NOM_PRESS_BLD_ART_ABP_MEAN": Param.ABP_MEAN,  # 0x4A17
    "NOM_PRESS_BLD_ART_SYS": Param.ABP_SYS,  # 0x4A11 arterial line labelled "ART"
    "NOM_PRESS_BLD_ART_DIA": Param.ABP_DIA,  # 0x4A12
    "NOM_PRESS_BLD_ART_MEAN": Param.ABP_MEAN,  # 0x4A13
    "NOM_AWAY_RESP_RATE": Param.RR,  # 0x5012 airway (capnography) respiration rate
    "NOM_RESP_RATE": Param.RR,  # 0x500A impedance respiration rate, see _SUPERSEDED_BY
    "NOM_AWAY_CO2_ET": Param.ETCO2,  # 0x50B0 end-tidal CO2
}

# Impedance RR keeps counting chest movement through an obstructive apnoea, when no air flows;
# capnography sees the apnoea. When one poll has a number for both, the airway rate is the RR.
_SUPERSEDED_BY: Final = {"NOM_RESP_RATE": "NOM_AWAY_RESP_RATE"}

# How VSCaptureMP writes times: `DateTime.ToString("dd-MM-yyyy HH:mm:ss.fff",
# CultureInfo.InvariantCulture)`, wall-clock time without a zone.
_VSCAPTURE_TIME_FORMAT: Final = "%d-%m-%Y %H:%M:%S.%f"

# VSCaptureMP prints IntelliVue FLOAT specials other than NaN as plain numbers (exponent 0):
# NRes -8388608, +INF 8388606, -INF -8388606; NaN itself becomes "-".
_FLOAT_SPECIALS: Final = frozenset({8388607.0, 8388606.0, -8388606.0, -8388608.0})

_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def decode_vscapture(
    payload: bytes, *, device_id: str, received_t: float, tz: dt.tzinfo | None = None
) -> DecodeResult:
    """Decode one VSCaptureMP numeric export: a JSON list of numeric objects.

    Per item: ``PhysioID`` (str) is looked up in `VSCAPTURE_PHYSIO_IDS`; any other name, or
    null (VSCaptureMP's "no name, no label"), is dropped as ``unmapped_physio_id``, which is
    routine: a monitor exports many numerics Vigil does not use. ``Value`` is a string as
    VSCaptureMP formats it (``"0.##"`` in the capture PC's culture, so a decimal comma is
    accepted) or a JSON number; ``"-"``, empty, null and IntelliVue FLOAT specials are "no
    value" (an invalid sample, ``reason="no_value"``); any other string is ``wrong_type``.
    ``DeviceID`` (free text, often unset) is ignored: the topic says which monitor it is.

    Units: VSCaptureMP does not export the unit code, so values are taken in the vocabulary's
    units (/min, %, mmHg). The monitor must be set to mmHg for pressures and CO2.

    Time: ``Timestamp`` ("dd-MM-yyyy HH:mm:ss.fff", the monitor's clock, no zone) read as wall
    time in `tz`, None meaning the host's local zone (the monitor's clock is set to ward
    time). When it is missing, unparseable or not a plausible epoch time (monitors without
    absolute time give year 0001), the sample gets `received_t` and is counted in
    `DecodeResult.retimed`; the value is still good, only its time is approximate.
    ``SystemLocalTime`` (the capture PC's clock) and ``Relativetimestamp`` are not used.

    Never raises; each rejected item adds one drop reason, a payload that is not a JSON list
    adds one in total.
    """
    try:
        doc = _load_list(payload)
    except _RejectedError as exc:
        return DecodeResult(dropped=(exc.reason.value,))

    items: list[tuple[str, Param, float, float | None] | DropReason] = []
    for item in doc:
        try:
            items.append(_vscapture_item(item, tz))
        except _RejectedError as exc:
            items.append(exc.reason)
    numbered = {
        entry[0] for entry in items if not isinstance(entry, DropReason) and _has_number(entry[2])
    }

    samples: list[Sample] = []
    dropped: list[str] = []
    out_of_range = retimed = 0
    for entry in items:
        if isinstance(entry, DropReason):
            dropped.append(entry.value)
            continue
        physio_id, param, value, t = entry
        if _SUPERSEDED_BY.get(physio_id) in numbered:
            dropped.append(DropReason.SUPERSEDED.value)
            continue
        if t is None:
            t = received_t
            retimed += 1
        sample, oor = judged(t, param, value, device_id, valid=True, reason=None)
        out_of_range += oor
        samples.append(sample)
    return DecodeResult(
        samples=tuple(samples), dropped=tuple(dropped), out_of_range=out_of_range, retimed=retimed
    )


def _load_list(payload: bytes) -> list[Any]:
    doc = _load_json(payload)
    if not isinstance(doc, list):
        raise _RejectedError(DropReason.NOT_LIST)
    return doc


def _has_number(value: float) -> bool:
    return not math.isnan(value)


def _vscapture_item(item: object, tz: dt.tzinfo | None) -> tuple[str, Param, float, float | None]:
    """(PhysioID, param, value (NaN: no value), epoch time or None) of one list item."""
    if not isinstance(item, dict):
        raise _RejectedError(DropReason.NOT_OBJECT)
    if "PhysioID" not in item or "Value" not in item:
        raise _RejectedError(DropReason.MISSING_FIELD)
    physio_id, raw = item["PhysioID"], item["Value"]
    if physio_id is not None and not isinstance(physio_id, str):
        raise _RejectedError(DropReason.WRONG_TYPE)
    param = VSCAPTURE_PHYSIO_IDS.get(physio_id) if physio_id is not None else None
    if param is None:
        raise _RejectedError(DropReason.UNMAPPED_PHYSIO_ID)
    assert physio_id is not None  # param is None otherwise
    return physio_id, param, _vscapture_value(raw), _vscapture_time(item.get("Timestamp"), tz)


def _vscapture_value(raw: object) -> float:
    if raw is None:
        return math.nan
    if _is_number(raw):
        value = _to_float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text in {"", "-"}:
            return math.nan
        if "," in text and "." not in text:
            # "0.##" never groups thousands, so a comma can only be a decimal comma
            text = text.replace(",", ".", 1)
        if _DECIMAL.fullmatch(text) is None:
            raise _RejectedError(DropReason.WRONG_TYPE)
        value = float(text)
    else:
        raise _RejectedError(DropReason.WRONG_TYPE)
    return math.nan if value in _FLOAT_SPECIALS else value


def _vscapture_time(raw: object, tz: dt.tzinfo | None) -> float | None:
    """Epoch seconds UTC of a VSCaptureMP timestamp, None when it cannot be used."""
    if not isinstance(raw, str):
        return None
    try:
        wall = dt.datetime.strptime(raw.strip(), _VSCAPTURE_TIME_FORMAT)  # noqa: DTZ007 - zone below
        # naive .timestamp() applies the host's zone rules, DST included
        t = (wall if tz is None else wall.replace(tzinfo=tz)).timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return t if 0.0 <= t <= MAX_T else None


def encode_vscapture(
    samples: tuple[Sample, ...] | list[Sample], *, tz: dt.tzinfo | None = None
) -> bytes:
    """A VSCaptureMP-style numeric export of `samples`, as `decode_vscapture` reads it.

    For simulators and tests. Each param is written under its first PhysioID in
    `VSCAPTURE_PHYSIO_IDS`, the value as VSCaptureMP formats it ("0.##", "-" for no value),
    the time as wall time in `tz` (None: the host's local zone) with milliseconds.
    ``DeviceID`` is the sample's device_id.
    """
    names: dict[Param, str] = {}
    for name, param in VSCAPTURE_PHYSIO_IDS.items():
        names.setdefault(param, name)
    out = []
    for s in samples:
        wall = dt.datetime.fromtimestamp(s.t, tz=dt.UTC).astimezone(tz)
        stamp = wall.strftime(_VSCAPTURE_TIME_FORMAT)[:-3]  # microseconds -> .fff
        out.append(
            {
                "Timestamp": stamp,
                "Relativetimestamp": "0",
                "SystemLocalTime": stamp,
                "PhysioID": names[s.param],
                "Value": _format_0_hash_hash(s.value),
                "DeviceID": s.device_id,
            }
        )
    return json.dumps(out, separators=(",", ":")).encode()


def _format_0_hash_hash(value: float) -> str:
    """C# ``String.Format("{0:0.##}", value)`` in the invariant culture; "-" for no value."""
    if not math.isfinite(value):
        return "-"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text
