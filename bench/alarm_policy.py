"""The policy whose one alarm `bench/latency.py` times.

`bench/latency.py` times an alarm from the sample that causes it to its arrival at the ward, so
the policy must add no delay of its own. (`bench/ward.py` runs the shipped policy: it times the
`active` events the scenarios raise, from their crossing sample.)
"""

from __future__ import annotations


def instant_alarm_policy(code: str, bench: str) -> str:
    """alarms.toml with one continuous rule: `code` on the first HR >= 140, off on the next one
    below, in every phase, no delay, no clear hold (docs/ALARMS.md "Continuous rules").

    The codes the session protocol needs (`alarms.policy.protocol_problems`: the BP gate of
    infusion start, the no-data alarms a discharge checks) are there as shipped; the benches
    open no session, so in phase `none` they never fire.
    """
    return f"""\
# {bench}: one continuous rule that fires on the first high sample and clears on the
# first normal one.
[general]
clear_after_s = 0.0

[[continuous]]
code = "{code}"
priority = "medium"
signal = "HRE"
op = ">="
limit = 140.0
delay_s = 0.0
latching = false
phases = ["none", "pre", "infusion", "post"]

[[determination]]
code = "BP_PRE_GATE"
priority = "medium"
latching = false
phases = ["pre"]
when = [{{ consecutive = 2, sys = 140.0, dia = 90.0 }}]

[[no_data]]
code = "SPO2_NO_DATA"
priority = "medium"
priority_in_pre = "low"
params = ["SPO2"]
after_s = 30.0
phases = ["pre", "infusion", "post"]

[[no_data]]
code = "HR_NO_DATA"
priority = "medium"
priority_in_pre = "low"
params = ["HR", "PR"]
after_s = 30.0
phases = ["pre", "infusion", "post"]
"""
