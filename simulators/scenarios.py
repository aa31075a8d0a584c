"""Simulated infusion sessions: the vital signs a bedside monitor would send, and the session steps.

A scenario is a list of `Sample`s and `Step`s in time order (`build_scenario`). Every scenario
follows one session timeline (docs/PROTOCOL.md "One session"), given as offsets from the
session start `t0` (epoch seconds UTC):

| offset s | step / readings |
|---|---|
| 0 | `session_start` (phase `pre`) |
| 60, 360 | the two baseline cuff determinations, 5 min apart (docs/PROTOCOL.md step 2) |
| 600 | `infusion_start`: 40 min infusion (docs/PROTOCOL.md step 3) |
| 870, 1170, ..., 2970 | cuff every 5 min during the infusion (8 determinations) |
| 3000 | `infusion_stop`: at least 120 min observation (docs/PROTOCOL.md step 4) |
| 3870, 4770, ..., 10170 | cuff every 15 min in `post` (8 determinations) |
| 10500 | `discharge`, 300 s after the discharge check at stop+7200 s (docs/ALARMS.md reading 11) |

`HR`, `PR` and `SPO2` arrive at 1 Hz on whole offsets from 0 to 10499 s, so no gap reaches the
5 s run limit or the 30 s no-data limit of docs/ALARMS.md. Each cuff determination is three samples
with one `t` (`NIBP_SYS`, `NIBP_DIA`, `NIBP_MEAN`, in that order), and each lands 30 s before its
interval mark: no determination then shares its instant with a session step, so its phase never
depends on row order (docs/ALARMS.md Reading 1). At one `t`, a step comes first, then `HR`,
`PR`, `SPO2`, then the determination.

Values are rounded to integers as a monitor displays them. The noise comes from a
`numpy.random.Generator` seeded with `seed`, and is bounded (clipped), so the physiology each
scenario promises holds for every seed, not just on average: HR a slow drift within +/-2.5 /min
plus beat-to-beat noise within +/-2 /min; SpO2 a smooth wander within +/-1.4 % around 97.5 (so
96 to 99 at rest); cuff SYS and DIA each within +/-2 mmHg of the scenario's curve.

The three scenarios are documented with the alarms of the default policy (docs/ALARMS.md) that they
are designed to produce, and at which offset; `t_inf` below is the infusion start (`t0 + 600`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt

from kernel.vocabulary import MDC_CODES, UNITS, Param, Sample, ScenarioItem, SessionEvent, Step

__all__ = [
    "DISCHARGE_OFFSET",
    "INFUSION_START_OFFSET",
    "INFUSION_STOP_OFFSET",
    "SCENARIOS",
    "ScenarioBuilder",
    "build_scenario",
    "desaturation",
    "determination_offsets",
    "hypertensive_surge",
    "normal_session",
    "scenario_phases",
]


ScenarioBuilder: TypeAlias = Callable[..., list[ScenarioItem]]

# The session timeline, offsets in seconds from the session start (docs/PROTOCOL.md).
INFUSION_START_OFFSET: Final = 600  # 10 min of `pre` for two determinations 5 min apart
INFUSION_STOP_OFFSET: Final = INFUSION_START_OFFSET + 40 * 60  # "0.5 mg/kg IV over 40 minutes"
# docs/ALARMS.md reading 11: the discharge check runs at stop + 7200 s; discharge comes 300 s later.
DISCHARGE_OFFSET: Final = INFUSION_STOP_OFFSET + 120 * 60 + 300

_PRE_DETERMINATIONS: Final = (60, 360)  # docs/PROTOCOL.md step 2: at least two, ideally 5 min apart
_INFUSION_CUFF_INTERVAL: Final = 300  # docs/PROTOCOL.md step 3: cuff BP every 5 min
_POST_CUFF_INTERVAL: Final = 900  # docs/PROTOCOL.md step 4: cuff BP every 15 min
# Each determination lands this long before its interval mark, so that the last infusion one
# (at 40 min) does not coincide with `infusion_stop` and its phase is unambiguous.
_CUFF_LEAD: Final = 30

# Noise bounds (see the module docstring). Clipping makes them hard limits, which the scenario
# docstrings rely on when they promise an alarm or its absence.
_HR_DRIFT_SD: Final = 1.2
_HR_DRIFT_MAX: Final = 2.5
_HR_DRIFT_WIDTH_S: Final = 60.0  # slow: the drift wanders over minutes
_BEAT_SD: Final = 0.8
_BEAT_MAX: Final = 2.0
_SPO2_SD: Final = 0.6
_SPO2_MAX: Final = 1.4
_SPO2_WIDTH_S: Final = 5.0  # an oximeter averages over several seconds: no 1 s jumps
_SPO2_REST: Final = 97.5
_CUFF_SD: Final = 1.0
_CUFF_MAX: Final = 2.0


def determination_offsets() -> tuple[int, ...]:
    """Offsets (s from the session start) of every cuff determination, in time order."""
    infusion = range(
        INFUSION_START_OFFSET + _INFUSION_CUFF_INTERVAL - _CUFF_LEAD,
        INFUSION_STOP_OFFSET,
        _INFUSION_CUFF_INTERVAL,
    )
    post = range(
        INFUSION_STOP_OFFSET + _POST_CUFF_INTERVAL - _CUFF_LEAD,
        DISCHARGE_OFFSET,
        _POST_CUFF_INTERVAL,
    )
    return (*_PRE_DETERMINATIONS, *infusion, *post)


# A curve is a list of keyframes (minutes since infusion start, change from the patient's
# resting value), linearly interpolated and 0 outside the list.
_Curve: TypeAlias = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class _Patient:
    """Resting values and the ketamine response curves of one scenario."""

    hr: float  # /min
    sys: float  # mmHg
    dia: float  # mmHg
    d_hr: _Curve
    d_sys: _Curve
    d_dia: _Curve
    d_spo2: _Curve = ((0.0, 0.0),)


# The usual response to 0.5 mg/kg over 40 min (docs/SOURCES.md 1.5): rise through the infusion, peak
# at 30-40 min, back to baseline within about 1.5-2 h. Fraction of the peak effect.
_USUAL_RESPONSE: Final[_Curve] = (
    (0.0, 0.0),
    (5.0, 0.12),
    (10.0, 0.30),
    (15.0, 0.50),
    (20.0, 0.68),
    (25.0, 0.82),
    (30.0, 0.94),
    (35.0, 1.0),
    (40.0, 0.96),
    (50.0, 0.75),
    (60.0, 0.55),
    (80.0, 0.30),
    (100.0, 0.15),
    (130.0, 0.05),
    (160.0, 0.0),
)


def _scaled(curve: _Curve, peak: float) -> _Curve:
    return tuple((minute, peak * fraction) for minute, fraction in curve)


# Peak effect: docs/SOURCES.md 1.5, between the meta-analysis (+12.6/+8.5 mmHg, HR +4.1 [S11]) and
# the Yale cohort (+16.0/+11.0 mmHg [S12]).
_USUAL_PATIENT: Final = _Patient(
    hr=68.0,
    sys=120.0,
    dia=78.0,
    d_hr=_scaled(_USUAL_RESPONSE, 4.0),
    d_sys=_scaled(_USUAL_RESPONSE, 14.0),
    d_dia=_scaled(_USUAL_RESPONSE, 9.0),
)

# Keyframes on the infusion determinations (4.5, 9.5, ... 39.5 min) and post ones (54.5, 69.5,
# ... min), so the cuff reads the curve exactly plus its noise. The reasoning for each level is in
# `hypertensive_surge`.
_SURGE_PATIENT: Final = _Patient(
    hr=72.0,
    sys=124.0,
    dia=80.0,
    d_hr=(
        (0.0, 0.0),
        (4.5, 6.0),
        (9.5, 15.0),
        (14.5, 25.0),
        (19.5, 29.0),
        (24.5, 32.0),
        (29.5, 35.0),
        (34.5, 37.0),
        (39.5, 35.0),
        (54.5, 18.0),
        (69.5, 10.0),
        (84.5, 5.0),
        (99.5, 2.0),
        (130.0, 0.0),
    ),
    d_sys=(
        (0.0, 0.0),
        (4.5, 8.0),
        (9.5, 18.0),
        (14.5, 31.0),
        (19.5, 44.0),
        (24.5, 50.0),
        (29.5, 61.0),
        (34.5, 68.0),
        (39.5, 64.0),
        (54.5, 32.0),
        (69.5, 21.0),
        (84.5, 11.0),
        (99.5, 5.0),
        (114.5, 2.0),
        (130.0, 0.0),
    ),
    d_dia=(
        (0.0, 0.0),
        (4.5, 3.0),
        (9.5, 8.0),
        (14.5, 13.0),
        (19.5, 18.0),
        (24.5, 22.0),
        (29.5, 26.0),
        (34.5, 30.0),
        (39.5, 28.0),
        (54.5, 16.0),
        (69.5, 8.0),
        (84.5, 4.0),
        (99.5, 2.0),
        (130.0, 0.0),
    ),
)

# SpO2 change from the resting 97.5 %: a fall from 20 min of infusion to a 82.5 % trough, back
# by 26 min. See `desaturation` for the crossing times.
_DESAT_PATIENT: Final = _Patient(
    hr=70.0,
    sys=118.0,
    dia=76.0,
    d_hr=_scaled(_USUAL_RESPONSE, 4.0),
    d_sys=_scaled(_USUAL_RESPONSE, 14.0),
    d_dia=_scaled(_USUAL_RESPONSE, 9.0),
    d_spo2=(
        (20.0, 0.0),
        (21.0, -4.5),
        (21.5, -7.5),
        (22.0, -10.5),
        (22 + 25 / 60, -13.0),
        (22 + 40 / 60, -15.0),
        (23 + 20 / 60, -15.0),
        (23 + 50 / 60, -12.0),
        (24 + 20 / 60, -8.0),
        (24 + 50 / 60, -4.5),
        (26.0, 0.0),
    ),
)


def _interp(curve: _Curve, minutes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    xs = np.array([m for m, _ in curve], dtype=np.float64)
    ys = np.array([d for _, d in curve], dtype=np.float64)
    out: npt.NDArray[np.float64] = np.interp(minutes, xs, ys, left=0.0, right=0.0)
    return out


def _bounded_noise(
    rng: np.random.Generator, n: int, *, sd: float, limit: float, width_s: float = 0.0
) -> npt.NDArray[np.float64]:
    """`n` noise values with standard deviation about `sd`, clipped to +/-`limit`.

    With `width_s` > 0 the noise is smoothed by a Gaussian kernel of that width (seconds at 1 Hz),
    then rescaled to `sd`, so it wanders slowly instead of jumping.
    """
    if width_s <= 0:
        return np.clip(rng.normal(0.0, sd, n), -limit, limit)
    half = math.ceil(4 * width_s)
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / width_s) ** 2)
    kernel /= math.sqrt(float(np.sum(kernel**2)))  # unit white noise in, unit variance out
    white = rng.normal(0.0, 1.0, n + 2 * half)
    return np.clip(sd * np.convolve(white, kernel, mode="valid"), -limit, limit)


def _sample(t: float, param: Param, value: float, device_id: str) -> Sample:
    return Sample(
        t=t,
        param=param,
        value=value,
        valid=True,
        device_id=device_id,
        unit=UNITS[param],
        mdc=MDC_CODES[param],
    )


def _build(patient: _Patient, *, t0: float, seed: int, device_id: str) -> list[ScenarioItem]:
    """The whole session for `patient`, in time order (see the module docstring)."""
    rng = np.random.default_rng(seed)
    offsets = np.arange(DISCHARGE_OFFSET, dtype=np.float64)
    minutes = (offsets - INFUSION_START_OFFSET) / 60.0
    n = offsets.size

    drift = _bounded_noise(rng, n, sd=_HR_DRIFT_SD, limit=_HR_DRIFT_MAX, width_s=_HR_DRIFT_WIDTH_S)
    heart = patient.hr + _interp(patient.d_hr, minutes) + drift
    # ECG and oximeter count the same beats; each has its own beat-to-beat jitter.
    hr = np.rint(heart + _bounded_noise(rng, n, sd=_BEAT_SD, limit=_BEAT_MAX)).tolist()
    pr = np.rint(heart + _bounded_noise(rng, n, sd=_BEAT_SD, limit=_BEAT_MAX)).tolist()
    spo2_noise = _bounded_noise(rng, n, sd=_SPO2_SD, limit=_SPO2_MAX, width_s=_SPO2_WIDTH_S)
    spo2 = np.rint(_SPO2_REST + _interp(patient.d_spo2, minutes) + spo2_noise).tolist()

    cuff = np.array(determination_offsets(), dtype=np.float64)
    cuff_minutes = (cuff - INFUSION_START_OFFSET) / 60.0
    cuff_noise = _bounded_noise(rng, 2 * cuff.size, sd=_CUFF_SD, limit=_CUFF_MAX)
    sys = np.rint(patient.sys + _interp(patient.d_sys, cuff_minutes) + cuff_noise[: cuff.size])
    dia = np.rint(patient.dia + _interp(patient.d_dia, cuff_minutes) + cuff_noise[cuff.size :])

    steps = {
        0: SessionEvent.SESSION_START,
        INFUSION_START_OFFSET: SessionEvent.INFUSION_START,
        INFUSION_STOP_OFFSET: SessionEvent.INFUSION_STOP,
    }
    cuff_at = {int(off): i for i, off in enumerate(cuff.tolist())}
    items: list[ScenarioItem] = []
    # One pass over whole offsets emits every item in time order: a step, then the 1 Hz
    # samples, then a determination (see the module docstring for why this order).
    for k in range(DISCHARGE_OFFSET):
        t = t0 + k
        if k in steps:
            items.append(Step(t, steps[k]))
        items.append(_sample(t, Param.HR, hr[k], device_id))
        items.append(_sample(t, Param.PR, pr[k], device_id))
        items.append(_sample(t, Param.SPO2, spo2[k], device_id))
        if (i := cuff_at.get(k)) is not None:
            s, d = float(sys[i]), float(dia[i])
            items.append(_sample(t, Param.NIBP_SYS, s, device_id))
            items.append(_sample(t, Param.NIBP_DIA, d, device_id))
            items.append(_sample(t, Param.NIBP_MEAN, float(round(d + (s - d) / 3)), device_id))
    items.append(Step(t0 + DISCHARGE_OFFSET, SessionEvent.DISCHARGE))
    return items


def normal_session(*, t0: float, seed: int, device_id: str = "mon1") -> list[ScenarioItem]:
    """An uneventful session: designed to raise no alarm at all under the default policy.

    Patient at rest 68 /min, 120/78 mmHg, SpO2 97.5 +/- 1.4 (96-99). Ketamine adds the usual
    response (docs/SOURCES.md 1.5): peak +14/+9 mmHg and +4 /min at 35 min of infusion, back to
    baseline 160 min after the infusion start. Worst cases over every seed, against each row of
    docs/ALARMS.md:

    - Baseline: SYS0 = mean of two pre readings of 120 +/- 2, so 118 to 122; HR0 66 to 70.
    - `BP_PRE_GATE`: pre readings at most 122/80, below 140/90.
    - `SYMPATHOMIMETIC_SURGE`, `BP_RISE`: SYS peaks at 136, below 1.20 x 118 = 141.6 (and far
      below 1.30 x SYS0); HR stays below 77, under 1.20 x HR0 as well.
    - `BP_HIGH`, `BP_CRISIS`: SYS at most 136, DIA at most 89.
    - `TACHY*`, `BRADY*`: HR and PR within 63.5 to 76.5 /min.
    - `DESAT*`: SpO2 never below 96.
    - `*_NO_DATA`: HR, PR and SpO2 every second; `NIBP_OVERDUE`: determinations 270 s after
      the infusion start then every 300 s (limit 420 s), 870 s after the stop then every 900 s
      (limit 1020 s).
    - `BASELINE_INCOMPLETE`: two pre determinations.
    - `DISCHARGE_NOT_READY` (stop + 7200 s = t0 + 10200): the response is over, every value is at
      its resting level, well inside +/-20 %, and SpO2 >= 96 >= SPO2_0 - 3.
    """
    return _build(_USUAL_PATIENT, t0=t0, seed=seed, device_id=device_id)


def hypertensive_surge(*, t0: float, seed: int, device_id: str = "mon1") -> list[ScenarioItem]:
    """A sympathomimetic surge to about 192/110 mmHg at 34.5 min of infusion, HR up to ~109 /min.

    Patient at rest 72 /min, 124/80 mmHg, so SYS0 = 122 to 126 over every seed (two pre readings
    of 124 +/- 2), DIA0 78 to 82, HR0 about 69 to 75. Limits then: surge SYS >= 1.20 x SYS0 =
    146.4 to 151.2; `BP_RISE` >= 1.30 x SYS0 = 158.6 to 163.8. Cuff curve (+/-2 mmHg):

    | min of infusion (offset) | 4.5 | 9.5 | 14.5 | 19.5 | 24.5 | 29.5 | 34.5 | 39.5 |
    |---|---|---|---|---|---|---|---|---|
    | offset from t0 | 870 | 1170 | 1470 | 1770 | 2070 | 2370 | 2670 | 2970 |
    | SYS/DIA | 132/83 | 142/88 | 155/93 | 168/98 | 174/102 | 185/106 | 192/110 | 188/108 |
    | HR | 78 | 87 | 97 | 101 | 104 | 107 | 109 | 107 |

    Designed alarms (default policy), times as offsets from t0:

    - `SYMPATHOMIMETIC_SURGE` at +1470 (14.5 min): SYS >= 153 >= 151.2 while the 60 s median
      HRE is about 96 (at least 92 in the worst case) >= 1.20 x HR0 (at most 90). At 9.5 min SYS
      is at most 144 < 146.4, so not earlier.
    - `BP_RISE` at +2070 (24.5 min): 19.5 and 24.5 min both >= 166 >= 163.8; the 14.5 min reading
      is at most 157 < 158.6, so the pair (14.5, 19.5) does not qualify.
    - `BP_HIGH` at +2370 (29.5 min): SYS >= 183; at 24.5 min SYS <= 176 and DIA <= 104.
    - `BP_CRISIS` at +2670 (34.5 min) by confirmation: 29.5 and 34.5 min both >= 180; no single
      reading reaches 200/120 (at most 194/112). High priority, latching: unacknowledged, it
      escalates at +2730, +2790, +2850 and stays active until discharge (+10500) ends it.

    Not designed to fire: `TACHY` (HR at most about 113.5 < 120), `DESAT*` (SpO2 96-99),
    `BP_PRE_GATE` (pre at most 126/82), `*_NO_DATA`, `NIBP_OVERDUE` (as in `normal_session`).
    During `post` the BP falls (156, 145, 135, 129 ... mmHg at 54.5, 69.5, 84.5, 99.5 min):
    `BP_HIGH` clears at +3870, `BP_RISE` too (156 + 2 < 158.6), the surge at +4770 (145 + 2 <
    146.4).
    Everything is back at rest 130 min after the infusion start, long before the discharge check
    at +10200, so `DISCHARGE_NOT_READY` does not fire.
    """
    return _build(_SURGE_PATIENT, t0=t0, seed=seed, device_id=device_id)


def desaturation(*, t0: float, seed: int, device_id: str = "mon1") -> list[ScenarioItem]:
    """SpO2 falls from 97.5 % through 92, 88 and 85 at 20-23 min of infusion, then recovers.

    Patient at rest 70 /min, 118/76 mmHg, with the usual BP/HR response of `normal_session`,
    which raises no alarm. The SpO2 curve (noise +/-1.4 %, smooth, so every seed crosses each limit
    within a few seconds of the curve):

    | min of infusion | 20 | 21 | 21.5 | 22 | 22:25 | 22:40-23:20 | 23:50 | 24:20 | 24:50 | 26 |
    |---|---|---|---|---|---|---|---|---|---|---|
    | SpO2 % | 97.5 | 93 | 90 | 87 | 84.5 | 82.5 | 85.5 | 89.5 | 93 | 97.5 |

    Designed alarms (default policy), times as offsets from t0 (infusion start +600), each
    within about +/-15 s depending on the seed:

    - `DESAT` (< 92 for 15 s) about +1890 (21:30): SpO2 < 92 from about +1875 to +2077.
    - `DESAT_SEVERE` (< 88 for 10 s) about +1925: < 88 from about +1915 to +2045.
    - `DESAT_CRITICAL` (< 85 for 5 s) about +1950: < 85 from about +1945 to +2020, at least 50 s
      in every seed (the curve is below 84.5 - 1.4 from +1956 to +2006).
    - `DESAT` clears 5 s after SpO2 is back at >= 92, about +2082 (24:42). `DESAT_SEVERE` and
      `DESAT_CRITICAL` latch: unacknowledged, they escalate 60, 120 and 180 s after raising;
      discharge ends `DESAT_SEVERE`, while `DESAT_CRITICAL` (all phases) stays until acknowledged.

    Nothing else: the lowest SpO2 is 81 %, back to 96-99 % from 26 min, so
    `DISCHARGE_NOT_READY` does not fire.
    """
    return _build(_DESAT_PATIENT, t0=t0, seed=seed, device_id=device_id)


SCENARIOS: Final[Mapping[str, ScenarioBuilder]] = MappingProxyType(
    {
        "normal-session": normal_session,
        "hypertensive-surge": hypertensive_surge,
        "desaturation": desaturation,
    }
)


def _check_name(name: str) -> None:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


def build_scenario(
    name: str, *, t0: float, seed: int, device_id: str = "mon1"
) -> list[ScenarioItem]:
    """The items of scenario `name` for a session opened at `t0` (epoch seconds UTC).

    Sorted by `t`; `Sample`s carry `device_id`, `unit` and `mdc`. The same arguments always give
    the same list. Raises `ValueError` for an unknown name.
    """
    _check_name(name)
    return SCENARIOS[name](t0=t0, seed=seed, device_id=device_id)


def scenario_phases(name: str, t0: float) -> dict[SessionEvent, float]:
    """When each session step of scenario `name` happens (epoch seconds UTC), in order."""
    _check_name(name)
    return {
        SessionEvent.SESSION_START: t0,
        SessionEvent.INFUSION_START: t0 + INFUSION_START_OFFSET,
        SessionEvent.INFUSION_STOP: t0 + INFUSION_STOP_OFFSET,
        SessionEvent.DISCHARGE: t0 + DISCHARGE_OFFSET,
    }
