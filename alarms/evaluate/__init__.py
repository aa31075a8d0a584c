"""`vigil evaluate`: the alarm burden of a policy over a cohort of recordings.

`sessions` replays one recording through the real engine and cuts it into sessions; `stats`
holds the pure statistics; `sweep` the policy variants; `run` the parallel replay; `report` the
JSON, CSV and HTML outputs. The command line is `monitor.evaluate_cli`.
"""
