"""The bed's inputs (monitor/inputs.py): one serialisation, read back exactly, one `apply`."""

from __future__ import annotations

import json
import math

from alarms.policy import load_policy
from kernel.vocabulary import Param, Phase, Sample, SystemAlarm
from monitor.inputs import (
    CommandInput,
    ConditionInput,
    SamplesInput,
    TickInput,
    apply,
    decode,
    encode,
)
from monitor.journal import Input
from monitor.session import BedCore

T0 = 1767225600.0


def row(item: SamplesInput | TickInput | CommandInput | ConditionInput) -> Input:
    """`item` as the journal stores it (through JSON, as SQLite holds it) and reads it back."""
    kind, t, data = encode(item)
    return Input(1, t, kind, json.loads(json.dumps(data)))


def test_each_input_reads_back_as_it_was_written() -> None:
    samples = SamplesInput(
        T0,
        (
            Sample(T0 - 0.5, Param.HR, 72.0, True, "mon1"),
            Sample(T0 - 0.4, Param.SPO2, math.nan, False, "ox", reason="sensor off"),
        ),
    )
    back = decode(row(samples))
    assert isinstance(back, SamplesInput)
    assert back.t == T0
    assert back.samples[0] == samples.samples[0]
    assert math.isnan(back.samples[1].value)
    assert (back.samples[1].valid, back.samples[1].reason) == (False, "sensor off")
    # the rows the journal has always held (journals written before stay readable)
    assert encode(samples)[2][1] == [T0 - 0.4, "SPO2", None, False, "ox", "sensor off"]
    assert encode(TickInput(T0)) == ("tick", T0, T0)
    for item in (
        TickInput(T0),
        CommandInput(T0, '{"cmd":"audio_pause","request_id":"r","user":"ann"}', "station"),
        CommandInput(T0, None, refused={"refused": "not JSON", "bytes": 3, "request_id": None}),
        ConditionInput(T0, SystemAlarm.MONITORING_GAP, True, "60 s", value=60.0, latching=True),
    ):
        assert decode(row(item)) == item


def test_apply_is_what_live_and_replay_share() -> None:
    core = BedCore(load_policy(), ward="w1", bed="b1")
    refused = CommandInput(T0, None, refused={"refused": "bad", "bytes": 1, "request_id": None})
    assert apply(core, refused).events == []
    assert apply(core, refused).outcome is None
    pause = apply(core, CommandInput(T0, '{"cmd":"audio_pause","request_id":"r","user":"ann"}'))
    assert pause.outcome is not None
    assert pause.outcome.ok
    gap = ConditionInput(T0 + 1, SystemAlarm.MONITORING_GAP, True, "60 s", value=60.0)
    (event,) = apply(core, gap).events
    assert (event.code, event.state.value, event.phase) == ("MONITORING_GAP", "active", Phase.NONE)
    assert apply(core, TickInput(T0 + 2)).events == []
