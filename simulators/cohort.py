"""`vigil simulate cohort`: a synthetic cohort of infusion sessions as recording CSVs.

Each session follows docs/PROTOCOL.md's timeline (offsets from its `session_start`): `pre` for
`pre_s` (10 min), `infusion` for `infusion_s` (40 min), `post` for `post_s` (120 min), then the
`discharge` row `discharge_delay_s` later (or uniformly up to `discharge_delay_max_s`), so the
2-h discharge check (docs/ALARMS.md Reading 11) has run. HR, PR and SpO2 arrive at 1 Hz on whole
seconds; a cuff determination (`NIBP_SYS`, `NIBP_DIA`, `NIBP_MEAN` at one `t`) is taken at
each `pre_cuff_s` offset, every `infusion_cuff_interval_s` in the infusion and every
`post_cuff_interval_s` after it, each `cuff_lead_s` before its interval mark (so no
determination shares its instant with a step).

What is drawn per session, and where each default comes from (docs/evaluate.md has the table;
`[U]` marks an assumption no source in the project's research gives):
- baselines SYS0, DIA0, HR0, SpO2_0: normal [U];
- the BP rise at its peak: bivariate normal, SYS +16.0 ± 11.2 and DIA +11.0 ± 8.45 mmHg at
  40 min (Yale 2024, 2,342 infusions [S12]), correlation `rise_correlation` [U];
- the HR rise at the peak: normal, mean +4.1 /min (the meta-analysis' mean [S11]), SD [U];
- the time course: the rise grows as sin² from infusion start to `peak_s` after it (40 min,
  Yale [S12]) and decays exponentially with `recovery_tau_s` (30 min: 95 % back within 90 min,
  Szarmach [S15]; back to baseline during the post-infusion monitoring, Emory [S13]);
- noise: HR and SpO2 wander smoothly (a twice box-filtered white noise of `*_drift_width_s`)
  plus white noise; PR is HR plus its own noise; each cuff reading has a normal error [U];
- failures: a determination fails (no values) with probability `cuff_failure_p`; oximeter
  probe-off and ECG leads-off episodes come as a Poisson process per hour with exponential
  lengths (no values meanwhile) [U]; desaturation episodes in infusion and post likewise [U].

The *true events* of each session go to `NAME.events.csv` beside it (`t,code`; see
docs/evaluate.md): `BP_HIGH` where the noise-free BP curve first reaches `true_sys`/`true_dia`
(180/110 by default), `DESAT` at the start of each desaturation episode deep enough to go
below `true_spo2`. `vigil evaluate` reads them to report sensitivity and time to alarm.

Determinism: session `i` draws from `numpy.random.default_rng([seed, i])` alone, so a cohort's
first N sessions are those of any larger cohort with the same seed and parameters, whatever
the number of sessions per file. Files are formatted with numpy (every number is an integer:
whole seconds, readings rounded as a monitor displays them), not row by row.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kernel.configfile import ConfigError, ConfigProblem, read_toml, validate

__all__ = [
    "CohortParams",
    "Normal",
    "SessionData",
    "load_params",
    "simulate_cohort",
    "simulate_cohort_main",
    "simulate_session",
]

# 2026-01-01T00:00:00Z: sessions of a cohort start from here, one `session_spacing_s` apart.
DEFAULT_START: Final = 1767225600
_PARAMS: Final = ("HR", "PR", "SPO2", "NIBP_SYS", "NIBP_DIA", "NIBP_MEAN")
_EVENTS: Final = ("session_start", "infusion_start", "infusion_stop", "discharge")
_EVENT_ROW: Final = len(_PARAMS)  # the param code of an EVENT row
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normal(_Model):
    """A normal distribution: `mean` and standard deviation `sd`."""

    mean: Annotated[float, Field(allow_inf_nan=False)]
    sd: NonNegative


class CohortParams(_Model):
    """Every parameter of the cohort; defaults and sources in docs/evaluate.md."""

    # The timeline of docs/PROTOCOL.md, in seconds.
    pre_s: Annotated[int, Field(ge=60)] = 600
    infusion_s: Annotated[int, Field(ge=60)] = 2400
    post_s: Annotated[int, Field(ge=60)] = 7200
    discharge_delay_s: Annotated[int, Field(ge=1)] = 300
    # None: every discharge `discharge_delay_s` after the check; else uniform up to this [U]
    discharge_delay_max_s: Annotated[int, Field(ge=1)] | None = None
    pre_cuff_s: tuple[Annotated[int, Field(ge=1)], ...] = (60, 360)
    infusion_cuff_interval_s: Annotated[int, Field(ge=60)] = 300
    post_cuff_interval_s: Annotated[int, Field(ge=60)] = 900
    cuff_lead_s: Annotated[int, Field(ge=1)] = 30
    session_spacing_s: Annotated[int, Field(ge=1)] = 14400
    start: Annotated[int, Field(ge=0)] = DEFAULT_START
    # Baselines: assumptions, marked U in the docs.
    sys0: Normal = Normal(mean=125.0, sd=14.0)
    dia0: Normal = Normal(mean=78.0, sd=9.0)
    hr0: Normal = Normal(mean=72.0, sd=11.0)
    spo2_0: Normal = Normal(mean=97.5, sd=1.0)
    # The rise at its peak: Yale for BP (S12), the meta-analysis for the HR mean (S11).
    sys_rise: Normal = Normal(mean=16.0, sd=11.2)
    dia_rise: Normal = Normal(mean=11.0, sd=8.45)
    rise_correlation: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.7
    hr_rise: Normal = Normal(mean=4.1, sd=6.0)
    peak_s: Annotated[int, Field(ge=1)] = 2400
    recovery_tau_s: Positive = 1800.0
    # Noise: assumptions.
    cuff_sd: NonNegative = 4.0
    hr_drift_sd: NonNegative = 2.0
    hr_noise_sd: NonNegative = 1.5
    pr_noise_sd: NonNegative = 1.0
    spo2_drift_sd: NonNegative = 0.7
    spo2_noise_sd: NonNegative = 0.4
    drift_width_s: Annotated[int, Field(ge=1, le=3600)] = 120
    # Failures and episodes: assumptions.
    cuff_failure_p: Probability = 0.03
    probe_off_per_h: NonNegative = 0.5
    probe_off_mean_s: Positive = 20.0
    leads_off_per_h: NonNegative = 0.2
    leads_off_mean_s: Positive = 30.0
    desat_per_h: NonNegative = 0.01
    desat_depth: Normal = Normal(mean=8.0, sd=3.0)
    desat_mean_s: Positive = 60.0
    # What counts as a true event in the annotations.
    true_sys: Positive = 180.0
    true_dia: Positive = 110.0
    true_spo2: Positive = 92.0

    @model_validator(mode="after")
    def _check(self) -> CohortParams:
        if any(not 0 < c < self.pre_s for c in self.pre_cuff_s):
            raise ValueError(f"pre_cuff_s offsets must lie inside pre (0-{self.pre_s} s)")
        if list(self.pre_cuff_s) != sorted(set(self.pre_cuff_s)):
            raise ValueError("pre_cuff_s offsets must be distinct and in increasing order")
        if self.cuff_lead_s >= min(self.infusion_cuff_interval_s, self.post_cuff_interval_s):
            raise ValueError("cuff_lead_s must be shorter than the cuff intervals")
        if self.discharge_delay_max_s is not None and (
            self.discharge_delay_max_s < self.discharge_delay_s
        ):
            raise ValueError("discharge_delay_max_s must be at least discharge_delay_s")
        if self.session_spacing_s < self.length_s:
            raise ValueError(
                f"session_spacing_s must be at least a session's length ({self.length_s} s)"
            )
        return self

    @property
    def length_s(self) -> int:
        """From `session_start` to the latest `discharge`."""
        delay = self.discharge_delay_max_s or self.discharge_delay_s
        return self.pre_s + self.infusion_s + self.post_s + delay


def load_params(path: Path | None, overrides: list[str]) -> CohortParams:
    """The defaults, updated by the TOML file `path`, then by `KEY=VALUE` overrides.

    A dotted key reaches into a distribution (`sys_rise.mean=10`); a value is read as TOML
    (`0.05`, `[60, 300]`).

    Raises:
        ConfigError: the file or an override is unreadable, or a value is refused, with where.
    """
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    file = str(path) if path is not None else "--set"
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError([ConfigProblem(file="--set", key=text, reason="expected KEY=VALUE")])
        value = _toml_value(raw.strip(), key.strip())
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    [ConfigProblem(file="--set", key=key, reason=f"{part} is not a table")]
                )
        node[leaf] = value
        file = "--set" if path is None else f"{path} and --set"
    defaults = CohortParams()
    for key, given in data.items():
        # a distribution given in part keeps the default's other half (`sys_rise.mean=10`)
        default = getattr(defaults, key, None)
        if isinstance(given, dict) and isinstance(default, BaseModel):
            data[key] = {**default.model_dump(), **given}
    params: CohortParams = validate(CohortParams, data, file=file)
    return params


def _toml_value(raw: str, key: str) -> Any:
    import tomllib  # noqa: PLC0415 - only for overrides

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            [ConfigProblem(file="--set", key=key, reason=f"{raw!r} is not a TOML value")]
        ) from None


class SessionData:
    """One simulated session as columns: time (int64 epoch s), param code, value (NaN: none).

    `events` are the true events (t, code). The param code indexes `_PARAMS`; `_EVENT_ROW`
    marks a session step, whose `value` is its index in `_EVENTS`.
    """

    __slots__ = ("code", "events", "t", "value")

    def __init__(
        self,
        t: npt.NDArray[np.int64],
        code: npt.NDArray[np.int8],
        value: npt.NDArray[np.float64],
        events: list[tuple[int, str]],
    ) -> None:
        self.t, self.code, self.value, self.events = t, code, value, events


def _smooth(rng: np.random.Generator, n: int, sd: float, width: int) -> npt.NDArray[np.float64]:
    """Stationary smooth noise of standard deviation `sd`: white noise box-filtered twice."""
    if sd == 0:
        return np.zeros(n)
    box = np.ones(width) / width
    kernel = np.convolve(box, box)
    white = rng.standard_normal(n + len(kernel) - 1)
    out: npt.NDArray[np.float64] = np.convolve(white, kernel, mode="valid")
    return out * (sd / math.sqrt(float(np.sum(kernel**2))))


def _episodes(
    rng: np.random.Generator, lo: int, hi: int, per_h: float, mean_s: float
) -> list[tuple[int, int]]:
    """(start, end) offsets of Poisson episodes in [lo, hi) with exponential lengths."""
    count = int(rng.poisson(per_h * (hi - lo) / 3600.0))
    starts = np.sort(rng.integers(lo, hi, size=count))
    lengths = np.maximum(1, np.rint(rng.exponential(mean_s, size=count))).astype(np.int64)
    return [(int(s), int(min(hi, s + d))) for s, d in zip(starts, lengths, strict=True)]


def _course(x: npt.NDArray[np.float64], p: CohortParams) -> npt.NDArray[np.float64]:
    """The rise's shape at `x` seconds after infusion start: 0 before, 1 at the peak."""
    peak, tau = float(p.peak_s), p.recovery_tau_s
    up = np.sin(np.pi / 2 * np.clip(x, 0.0, peak) / peak) ** 2
    down = np.exp(-np.maximum(x - peak, 0.0) / tau)
    out: npt.NDArray[np.float64] = np.where(x < 0, 0.0, np.where(x <= peak, up, down))
    return out


def cuff_offsets(p: CohortParams) -> npt.NDArray[np.int64]:
    """Offsets of the determinations from `session_start`, in order."""
    t_inf, t_stop = p.pre_s, p.pre_s + p.infusion_s
    inf = np.arange(t_inf + p.infusion_cuff_interval_s, t_stop + 1, p.infusion_cuff_interval_s)
    post = np.arange(t_stop + p.post_cuff_interval_s, t_stop + p.post_s + 1, p.post_cuff_interval_s)
    return np.concatenate(
        [np.asarray(p.pre_cuff_s, dtype=np.int64), inf - p.cuff_lead_s, post - p.cuff_lead_s]
    ).astype(np.int64)


def simulate_session(p: CohortParams, seed: int, index: int) -> SessionData:
    """Session `index` of the cohort `seed` (deterministic; see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    t0 = p.start + index * p.session_spacing_s
    sys0 = rng.normal(p.sys0.mean, p.sys0.sd)
    dia0 = rng.normal(p.dia0.mean, p.dia0.sd)
    hr0 = rng.normal(p.hr0.mean, p.hr0.sd)
    spo2_0 = min(100.0, rng.normal(p.spo2_0.mean, p.spo2_0.sd))
    z1, z2 = rng.standard_normal(2)
    rho = p.rise_correlation
    d_sys = p.sys_rise.mean + p.sys_rise.sd * z1
    d_dia = p.dia_rise.mean + p.dia_rise.sd * (rho * z1 + math.sqrt(1 - rho * rho) * z2)
    d_hr = rng.normal(p.hr_rise.mean, p.hr_rise.sd)
    delay = p.discharge_delay_s
    if p.discharge_delay_max_s is not None and p.discharge_delay_max_s > delay:
        # drawn only when asked for, so the default cohort's draws stay as they were
        delay = int(rng.integers(delay, p.discharge_delay_max_s + 1))
    n = p.pre_s + p.infusion_s + p.post_s + delay
    shape = _course(np.arange(n, dtype=np.float64) - p.pre_s, p)
    events: list[tuple[int, str]] = []
    continuous = _continuous(rng, p, n, hr0 + d_hr * shape, spo2_0, t0, events)
    cuffs = cuff_offsets(p)
    c_shape = _course(cuffs.astype(np.float64) - p.pre_s, p)
    k = len(cuffs)
    sys_m = np.rint(sys0 + d_sys * c_shape + rng.normal(0.0, p.cuff_sd, k))
    dia_m = np.rint(dia0 + d_dia * c_shape + rng.normal(0.0, p.cuff_sd, k))
    mean_m = np.rint(dia_m + (sys_m - dia_m) / 3.0)
    failed = rng.random(k) < p.cuff_failure_p
    for col in (sys_m, dia_m, mean_m):
        col[failed] = np.nan
    # the noise-free curve reaching the limits, second by second
    curve = (sys0 + d_sys * shape >= p.true_sys) | (dia0 + d_dia * shape >= p.true_dia)
    curve[: p.pre_s] = False
    if curve.any():
        events.append((t0 + int(np.argmax(curve)), "BP_HIGH"))
    events.sort()
    nibp = np.column_stack([sys_m, dia_m, mean_m])
    return _assemble(p, t0, n, continuous, cuffs, nibp, events)


def _continuous(
    rng: np.random.Generator,
    p: CohortParams,
    n: int,
    hr_mean: npt.NDArray[np.float64],
    spo2_0: float,
    t0: int,
    events: list[tuple[int, str]],
) -> npt.NDArray[np.float64]:
    """HR, PR, SpO2 per second as three columns (NaN: no value); desaturations to `events`."""
    hr = (
        hr_mean
        + _smooth(rng, n, p.hr_drift_sd, p.drift_width_s)
        + rng.normal(0.0, p.hr_noise_sd, n)
    )
    pr = hr + rng.normal(0.0, p.pr_noise_sd, n)
    spo2 = (
        spo2_0
        + _smooth(rng, n, p.spo2_drift_sd, p.drift_width_s)
        + rng.normal(0.0, p.spo2_noise_sd, n)
    )
    t_stop = p.pre_s + p.infusion_s
    for start, end in _episodes(rng, p.pre_s, t_stop + p.post_s, p.desat_per_h, p.desat_mean_s):
        depth = max(0.0, rng.normal(p.desat_depth.mean, p.desat_depth.sd))
        length = end - start
        spo2[start:end] -= depth * np.sin(np.pi * np.arange(length) / length) ** 2
        if spo2_0 - depth < p.true_spo2:
            events.append((t0 + start, "DESAT"))
    out = np.column_stack([np.rint(hr), np.rint(pr), np.clip(np.rint(spo2), 0.0, 100.0)])
    for start, end in _episodes(rng, 0, n, p.probe_off_per_h, p.probe_off_mean_s):
        out[start:end, 1:] = np.nan  # the oximeter gives neither PR nor SpO2
    for start, end in _episodes(rng, 0, n, p.leads_off_per_h, p.leads_off_mean_s):
        out[start:end, 0] = np.nan
    return out


def _assemble(
    p: CohortParams,
    t0: int,
    n: int,
    continuous: npt.NDArray[np.float64],
    cuffs: npt.NDArray[np.int64],
    nibp: npt.NDArray[np.float64],
    events: list[tuple[int, str]],
) -> SessionData:
    """The rows in recording order: at one second a step, then HR, PR, SPO2, then NIBP."""
    k = len(cuffs)
    t_inf, t_stop = p.pre_s, p.pre_s + p.infusion_s
    steps = np.array([0, t_inf, t_stop, n], dtype=np.int64)
    t = np.concatenate([steps, np.repeat(np.arange(n, dtype=np.int64), 3), np.repeat(cuffs, 3)])
    order_key = np.concatenate(
        [np.zeros(4), np.tile([1.0, 2.0, 3.0], n), np.tile([4.0, 5.0, 6.0], k)]
    )
    code = np.concatenate(
        [np.full(4, _EVENT_ROW), np.tile([0, 1, 2], n), np.tile([3, 4, 5], k)]
    ).astype(np.int8)
    value = np.concatenate([np.arange(4, dtype=np.float64), continuous.ravel(), nibp.ravel()])
    # a reading no display could show is no value, as a monitor shows dashes
    value[(code < _EVENT_ROW) & ((value < 0) | (value > 999))] = np.nan
    order = np.lexsort((order_key, t))
    return SessionData(t[order] + t0, code[order], value[order], events)


# ---------------------------------------------------------------- writing, vectorised


def _digits(x: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """Zero-padded decimal digits of non-negative integers, `width` columns."""
    out = np.empty((len(x), width), dtype=np.uint8)
    v = x.copy()
    for j in range(width - 1, -1, -1):
        out[:, j] = 48 + v % 10
        v //= 10
    return out


def _table(words: tuple[str, ...], width: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[Any]]:
    table = np.zeros((len(words), width), dtype=np.uint8)
    for i, w in enumerate(words):
        table[i, : len(w)] = np.frombuffer(w.encode(), dtype=np.uint8)
    return table, np.array([len(w) for w in words])


_PARAM_TEXT: Final = (*_PARAMS, "EVENT")
_P_TABLE, _P_LEN = _table(_PARAM_TEXT, 9)
_E_TABLE, _E_LEN = _table(_EVENTS, 14)


def format_rows(t: npt.NDArray[np.int64], code: npt.NDArray[np.int8], value: Any) -> bytes:
    """The rows as recording CSV lines (no header), built as one byte matrix."""
    n = len(t)
    if n == 0:
        return b""
    t_w = max(1, len(str(int(t.max()))))
    v_w = 14
    width = t_w + 1 + 9 + 1 + v_w + 1
    m = np.zeros((n, width), dtype=np.uint8)
    keep = np.zeros((n, width), dtype=bool)
    t_digits = _digits(t, t_w)
    t_len = np.floor(np.log10(np.maximum(t, 1))).astype(np.int64) + 1
    m[:, :t_w] = t_digits
    cols = np.arange(t_w)
    keep[:, :t_w] = cols[None, :] >= (t_w - t_len)[:, None]
    m[:, t_w] = ord(",")
    keep[:, t_w] = True
    p0 = t_w + 1
    m[:, p0 : p0 + 9] = _P_TABLE[code]
    keep[:, p0 : p0 + 9] = np.arange(9)[None, :] < _P_LEN[code][:, None]
    m[:, p0 + 9] = ord(",")
    keep[:, p0 + 9] = True
    v0 = p0 + 10
    is_event = code == _EVENT_ROW
    present = ~np.isnan(value) & ~is_event
    ints = np.where(present, value, 0).astype(np.int64)
    m[:, v0 : v0 + v_w] = _digits(ints, v_w)
    v_len = np.floor(np.log10(np.maximum(ints, 1))).astype(np.int64) + 1
    vcols = np.arange(v_w)
    keep[:, v0 : v0 + v_w] = (vcols[None, :] >= (v_w - v_len)[:, None]) & present[:, None]
    if is_event.any():
        which = value[is_event].astype(np.int64)
        m[is_event, v0 : v0 + v_w] = _E_TABLE[which]
        keep[is_event, v0 : v0 + v_w] = vcols[None, :] < _E_LEN[which][:, None]
    m[:, -1] = ord("\n")
    keep[:, -1] = True
    return m[keep].tobytes()


def write_sessions(sessions: Iterable[SessionData], path: Path) -> None:
    """One recording CSV holding `sessions` in order, and its `.events.csv` beside it.

    Drawn and formatted a session at a time: memory stays that of one session whatever the
    packing.
    """
    lines = ["t,code"]
    with path.open("wb") as f:
        f.write(b"t,param,value\n")
        for s in sessions:
            f.write(format_rows(s.t, s.code, s.value))
            lines += [f"{et},{ec}" for et, ec in s.events]
    events_path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def events_path(recording: Path) -> Path:
    """`NAME.events.csv` beside `NAME.csv`: the true events of a recording."""
    return recording.with_name(recording.name.removesuffix(".csv") + ".events.csv")


def simulate_cohort(
    p: CohortParams, *, sessions: int, seed: int, out: Path, per_file: int = 1
) -> list[Path]:
    """Write the cohort to `out` (created); return the recordings written, in order."""
    out.mkdir(parents=True, exist_ok=True)
    files = math.ceil(sessions / per_file)
    digits = max(5, len(str(files)))
    written: list[Path] = []
    for f in range(files):
        first = f * per_file
        batch = (
            simulate_session(p, seed, i) for i in range(first, min(sessions, first + per_file))
        )
        path = out / f"session-{f + 1:0{digits}d}.csv"
        write_sessions(batch, path)
        written.append(path)
    _write_manifest(p, sessions=sessions, seed=seed, per_file=per_file, out=out)
    return written


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    return repr(value)


def _write_manifest(p: CohortParams, *, sessions: int, seed: int, per_file: int, out: Path) -> None:
    """`cohort.toml`: the parameters used (readable by `--params`) and how it was made."""
    lines = [
        "# A vigil simulate cohort: these are every parameter it was drawn with; give this file",
        "# to --params with the same --seed and --sessions to draw it again.",
        f"# sessions = {sessions}, seed = {seed}, sessions per file = {per_file}",
        "",
    ]
    tables: list[str] = []
    for key, value in p.model_dump().items():
        if isinstance(value, dict):
            tables += ["", f"[{key}]"] + [f"{k} = {_toml_text(v)}" for k, v in value.items()]
        elif value is None:
            lines.append(f"# {key}: not set")  # TOML has no null; absent is the default
        else:
            lines.append(f"{key} = {_toml_text(value)}")
    (out / "cohort.toml").write_text("\n".join(lines + tables) + "\n", encoding="utf-8")


def simulate_cohort_main(args: argparse.Namespace) -> int:
    """`vigil simulate cohort --sessions N --seed S --out DIR [--params TOML] [--set K=V]`."""
    prog = "vigil simulate cohort"
    if args.out is None or args.sessions is None:
        print(f"{prog}: give --sessions N and --out DIR", file=sys.stderr)
        return 2
    if args.mqtt or args.serial or args.pty:
        print(
            f"{prog}: a cohort is written to files: no --mqtt, --serial or --pty", file=sys.stderr
        )
        return 2
    if args.sessions < 1 or args.per_file < 1:
        print(f"{prog}: --sessions and --per-file must be at least 1", file=sys.stderr)
        return 2
    try:
        params = load_params(args.params, list(args.set))
    except ConfigError as exc:
        print(f"{prog}: bad parameters:\n{exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        paths = simulate_cohort(
            params, sessions=args.sessions, seed=args.seed, out=args.out, per_file=args.per_file
        )
    except OSError as exc:
        print(f"{prog}: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    took = time.perf_counter() - started
    print(
        f"{prog}: {args.sessions} sessions (seed {args.seed}) in {len(paths)} files "
        f"under {args.out} in {took:.1f} s",
        file=sys.stderr,
    )
    return 0
