"""The gateway's config: defaults, overrides, located errors, `vigil check-config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kernel.configfile import ConfigError
from monitor.hl7.gateway import parse_ack
from monitor.hl7.settings import load_gateway_config, parse_destination


def test_defaults_are_those_of_the_issue() -> None:
    config = load_gateway_config(
        None, to="engine:2575", broker_url="mqtt://b:1883", environ={"VIGIL_BROKER__PASSWORD": "pw"}
    )
    assert config.broker.password is not None
    assert config.broker.password.get_secret_value() == "pw"
    h = config.hl7
    assert (h.interval_s, h.ack_timeout_s, h.tls.enabled) == (60.0, 5.0, False)
    assert parse_destination(h.to or "") == ("engine", 2575)
    assert config.broker.host == "b"


def test_relative_paths_are_relative_to_the_file_and_cli_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "hl7.toml"
    path.write_text('[hl7]\nto = "a:1"\nqueue = "q.sqlite"\n[hl7.tls]\nenabled = true\n'
                    'ca_file = "ca.pem"\n')  # fmt: skip
    config = load_gateway_config(path, to="b:2")
    assert config.hl7.queue == tmp_path / "q.sqlite"
    assert config.hl7.tls.ca_file == tmp_path / "ca.pem"
    assert config.hl7.to == "b:2"


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ('[hl7]\nto = "nohost"\n', "hl7.to", "expected HOST:PORT"),
        ('[hl7]\nto = "h:70000"\n', "hl7.to", "expected HOST:PORT"),
        ("[hl7]\nack_timeout_s = 0\n", "hl7.ack_timeout_s", "greater than 0"),
        ('[hl7]\nfacility = "A|B"\n', "hl7.facility", "pattern"),
        ("[hl7]\ninterval_s = true\n", "hl7.interval_s", "expected a number"),
        ("[hl7]\nwhat = 1\n", "hl7.what", "unknown key"),
        ("[bed]\nward = 1\n", "bed", "unknown section"),
        ('[hl7]\nprefix = "vigil/#"\n', "hl7.prefix", "not a topic prefix"),
        ('[hl7]\nprefix = "vigil/"\n', "hl7.prefix", "not a topic prefix"),
        (
            '[hl7]\nmetrics_listen = "9465"\n',
            "hl7.metrics_listen",
            "expected HOST:PORT, got '9465'",
        ),
        ('[hl7.tls]\nca_file = "x"\n', "hl7.tls", "enabled is false"),
    ],
)
def test_bad_configs_are_refused_with_the_file_and_key(
    tmp_path: Path, body: str, key: str, reason: str
) -> None:
    path = tmp_path / "hl7.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    problem = info.value.problems[0]
    assert (problem.file, problem.key) == (str(path), key)
    assert reason in problem.reason


def test_check_config_validates_a_gateway_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[hl7]\nto = "engine:2575"\nward = "w1"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[hl7]\nto = "engine"\n[hl7.tls]\nenabled = true\ncert_file = "none.pem"\n')
    run = [sys.executable, "-m", "monitor.cli", "check-config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "hl7 gateway to engine:2575" in ok.stdout
    refused = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert f"{bad}: hl7.to: expected HOST:PORT" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_parse_ack_reads_msa_and_err() -> None:
    ack = "MSH|^~\\&|E|H|V|C|20250101||ACK^R01|9|P|2.6\rMSA|AE|V1|bad PID\rERR|||207^x^HL70357"
    code, control_id, text = parse_ack(ack.encode())
    assert (code, control_id) == ("AE", "V1")
    assert "bad PID" in text
    assert "207" in text
    with pytest.raises(ValueError, match="not an ACK"):
        parse_ack(b"MSH|^~\\&|E\rPID|1")


def test_the_shipped_example_is_valid() -> None:
    example = Path(__file__).parents[3] / "config" / "hl7.example.toml"
    config = load_gateway_config(example, environ={})
    assert config.hl7.to == "engine.hospital.example:2575"
    assert config.hl7.ward == "w1"
    assert config.hl7.interval_s == 60.0


def test_vigil_hl7_without_the_extra_says_how_to_install_it() -> None:
    # `sys.modules[name] = None` makes `import name` fail as if it were not installed
    code = (
        "import sys; sys.modules['hl7'] = None; from monitor.cli import main; "
        "sys.exit(main(['hl7', '--broker', 'mqtt://127.0.0.1:1', '--to', '127.0.0.1:9']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "pip install 'vigil[hl7]'" in done.stderr
    assert "Traceback" not in done.stderr
