""".ci/run: every test module that talks to a broker runs on the embedded broker as well."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A module that talks to a broker: it takes a broker fixture or starts a broker itself.
_USES_A_BROKER = re.compile(
    r"\b(mqtt_broker|mqtt_broker_url|mosquitto)\s*:|BrokerProcess\(|embedded_broker\("
)


def _embedded_selection() -> list[str]:
    run = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"VIGIL_TEST_BROKER=embedded (.*?)</dev/null", run, re.DOTALL)
    assert m is not None, ".ci/run has no VIGIL_TEST_BROKER=embedded pass"
    assert '-m "not mosquitto_only' in m[1]
    return [word for word in m[1].split() if word.startswith("tests")]


def test_every_module_that_talks_mqtt_also_runs_on_the_embedded_broker() -> None:
    selected = _embedded_selection()
    for path in selected:
        assert (ROOT / path).exists(), f".ci/run selects {path}, which does not exist"
    missing = []
    for module in sorted((ROOT / "tests").rglob("test_*.py")):
        rel = module.relative_to(ROOT).as_posix()
        if module == Path(__file__).resolve() or not _USES_A_BROKER.search(module.read_text()):
            continue
        if not any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in selected):
            missing.append(rel)
    assert missing == [], f"add these to the embedded-broker pass of .ci/run: {missing}"
