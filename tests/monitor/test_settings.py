"""The bed config (monitor/settings.py, kernel/configfile.py): docs/ARCHITECTURE.md "Config file".

Every refusal must say which file and which dotted key is at fault; the expected keys below are
written from the file's layout, not read back from the loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.masimo.spec import MasimoSettings as MasimoDriver
from drivers.mqtt.spec import MqttSettings as MqttDriver
from drivers.registry import SPECS
from kernel.configfile import ConfigError, ConfigProblem
from kernel.paths import shipped_config_dir
from monitor.settings import Settings, load_settings, parse_settings
from tests.strategies import json_values

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "bed.example.toml"
BED = '[bed]\nward = "w1"\nbed = "b3"\n'
MQTT_DRIVER = '[[drivers]]\nkind = "mqtt"\ndevice_id = "mon1"\ntopic = "monitors/mon1/samples"\n'
SECRET = "s3cr3t-Pa55w0rd"  # noqa: S105 - a test value that must never be shown


def write(folder: Path, text: str, name: str = "bed.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={} if environ is None else environ)
    assert info.value.problems, "a ConfigError must carry at least one problem"
    return info.value.problems


def keys(problems: list[ConfigProblem]) -> list[str]:
    return [p.key for p in problems]


def uncommented(text: str) -> str:
    """The example with every commented-out key and section header switched on."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^#\s?((?:\[\[?[a-z_]+\]\]?(?:\s+#.*)?)|(?:[a-z_]+\s*=\s*\S.*))$", line)
        out.append(m.group(1) if m else line)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the shipped example


def test_example_loads_with_its_values() -> None:
    s = load_settings(EXAMPLE, environ={})
    assert (s.bed.ward, s.bed.bed) == ("w1", "b3")
    assert s.prefix == "vigil/w1/b3"
    assert s.broker.url == "mqtt://127.0.0.1:1883"
    assert (s.broker.host, s.broker.port, s.broker.tls) == ("127.0.0.1", 1883, False)
    assert s.broker.password is None
    assert s.journal.path == Path("/var/lib/vigil/journal.sqlite")
    assert s.metrics.listen == "127.0.0.1:9464"
    assert len(s.drivers) == 1
    d = s.drivers[0]
    assert isinstance(d, MqttDriver)
    assert (d.device_id, d.topic, d.format) == ("mon1", "monitors/mon1/samples", "vigil")
    # no policy line is active: the shipped policy is used
    assert s.alarms.policy.resolve() == (shipped_config_dir() / "alarms.toml").resolve()


def test_every_commented_key_of_the_example_is_valid(tmp_path: Path) -> None:
    text = uncommented(EXAMPLE.read_text(encoding="utf-8"))
    # the TLS files the example comments go with an mqtts:// URL (checked below)
    text = text.replace('url = "mqtt://127.0.0.1:1883"', 'url = "mqtts://127.0.0.1:8883"', 1)
    # the switch-on really switched something on (guards the helper itself)
    assert 'password = "..."' in text
    assert "\n[clock]" in text
    assert '\nkind = "masimo"' in text
    s = load_settings(write(tmp_path, text), environ={})
    assert s.broker.username == "bed-w1-b3"
    assert s.broker.password is not None
    assert s.broker.password.get_secret_value() == "..."
    assert s.broker.ca_file == Path("/etc/vigil/ca.crt")
    assert s.broker.prefix == "vigil/w1/b3"
    # the order every connection tries (drivers/mqtt/client.py)
    assert s.broker.endpoints == (("127.0.0.1", 8883), ("10.0.0.2", 8883))
    assert s.alarms.policy == Path("/etc/vigil/alarms.toml")
    assert s.clock.anchor == 1767225600.0
    # every registered kind is shown, each once
    assert sorted(d.kind for d in s.drivers) == sorted(spec.kind for spec in SPECS)
    mqtt, masimo = s.drivers[:2]
    assert isinstance(mqtt, MqttDriver)
    assert mqtt.broker_url == "mqtt://10.0.0.5:1883"
    assert isinstance(masimo, MasimoDriver)
    assert masimo.port == "/dev/ttyUSB0"


def _field_names(model: Any) -> set[str]:
    return set(model.model_fields)


def test_every_settings_key_is_shown_in_the_example() -> None:
    # docs/ARCHITECTURE.md: config/bed.example.toml ships with every key (commented or not)
    text = uncommented(EXAMPLE.read_text(encoding="utf-8"))
    shown = set(re.findall(r"^([a-z_]+)\s*=", text, flags=re.MULTILINE))
    expected: set[str] = set()
    for section, info in Settings.model_fields.items():
        if section == "drivers":
            for spec in SPECS:
                expected |= _field_names(spec.settings)
            continue
        assert info.annotation is not None
        expected |= _field_names(info.annotation)
    assert expected - shown == set()


# ---------------------------------------------------------------- located problems

BAD_CASES = [
    pytest.param(BED + "colour = 1\n", "bed.colour", "unknown", id="unknown-key"),
    pytest.param(BED + "[brokr]\nurl = 'mqtt://h'\n", "brokr", "unknown", id="unknown-section"),
    pytest.param(BED + MQTT_DRIVER + "baud = 9600\n", "drivers[0].baud", "unknown", id="drv-key"),
    pytest.param(BED + "[broker]\nurl = 'http://h:1883'\n", "broker.url", "mqtt", id="scheme"),
    pytest.param(BED + "[broker]\nurl = 'h:1883'\n", "broker.url", "mqtt", id="no-scheme"),
    pytest.param(BED + "[broker]\nurl = 'mqtt://:1883'\n", "broker.url", "host", id="no-host"),
    pytest.param(BED + "[broker]\nurl = 'mqtt://h:99999'\n", "broker.url", "port", id="port-big"),
    pytest.param(BED + "[broker]\nurl = 'mqtt://h:abc'\n", "broker.url", "port", id="port-text"),
    pytest.param(BED + "[broker]\nurl = 'mqtt://h:-1'\n", "broker.url", "port", id="port-neg"),
    pytest.param(BED + "[broker]\nurl = 'mqtt://h:0'\n", "broker.url", "port", id="port-zero"),
    pytest.param(BED + "[broker]\nkeepalive_s = 'x'\n", "broker.keepalive_s", "int", id="type-int"),
    pytest.param(BED + "[broker]\nurl = 1883\n", "broker.url", "str", id="type-str"),
    pytest.param(BED + "[metrics]\nenabled = 'maybe'\n", "metrics.enabled", "bool", id="type-bool"),
    pytest.param(BED + "broker = 'mqtt://h'\n", "bed.broker", "unknown", id="key-in-bed"),
    pytest.param('broker = "mqtt://h"\n' + BED, "broker", "", id="type-section"),
    pytest.param(
        BED + "[broker]\nvitals_expiry_s = true\n",
        "broker.vitals_expiry_s",
        "",
        id="bool-for-number",
    ),
    pytest.param(
        BED + MQTT_DRIVER.replace('"monitors/mon1/samples"', "5"),
        "drivers[0].topic",
        "str",
        id="type-drv",
    ),
    pytest.param(
        BED + MQTT_DRIVER + '[[drivers]]\nkind = "philips"\ndevice_id = "x"\n',
        "drivers[1].kind",
        "philips",
        id="unknown-kind",
    ),
    pytest.param(
        BED + MQTT_DRIVER + '[[drivers]]\ndevice_id = "x"\nport = "/dev/ttyS0"\n',
        "drivers[1].kind",
        "missing",
        id="missing-kind",
    ),
    pytest.param(
        BED + MQTT_DRIVER + '[[drivers]]\nkind = "masimo"\ndevice_id = "mon1"\nport = "/dev/x"\n',
        "drivers[1].device_id",
        "mon1",
        id="duplicate-device-id",
    ),
    pytest.param(
        BED + MQTT_DRIVER.replace('"mon1"', '"mon 1"'), "drivers[0].device_id", "", id="bad-dev-id"
    ),
    pytest.param(BED.replace('"w1"', '"w/1"'), "bed.ward", "", id="bad-ward"),
    pytest.param(BED.replace('"b3"', '"b3+"'), "bed.bed", "", id="bad-bed"),
    pytest.param(BED.replace('"b3"', '""'), "bed.bed", "", id="empty-bed"),
    pytest.param(BED.replace('"w1"', '"' + "w" * 65 + '"'), "bed.ward", "", id="long-ward"),
    pytest.param('[broker]\nurl = "mqtt://h"\n', "bed", "", id="missing-bed"),
]


@pytest.mark.parametrize(("text", "key", "reason_part"), BAD_CASES)
def test_problem_is_located(tmp_path: Path, text: str, key: str, reason_part: str) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert keys(problems) == [key]
    (p,) = problems
    assert p.file == str(path)
    assert reason_part.lower() in p.reason.lower()
    assert p.reason.strip()
    # the one-line form a person reads names file and key
    assert str(p).startswith(f"{path}: {key}: ")


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    text = (
        BED.replace('"w1"', '"w 1"')
        + "colour = 1\n"
        + "[broker]\nurl = 'http://h'\nkeepalive_s = 'x'\n"
        + MQTT_DRIVER
        + '[[drivers]]\nkind = "philips"\ndevice_id = "x"\n'
    )
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert sorted(keys(problems)) == sorted(
        ["bed.ward", "bed.colour", "broker.url", "broker.keepalive_s", "drivers[1].kind"]
    )
    assert {p.file for p in problems} == {str(path)}
    message = str(ConfigError(problems))
    for k in keys(problems):
        assert f"{path}: {k}: " in message


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, BED + "[broker\nurl = 'mqtt://h'\n")
    (p,) = problems_of(path)
    assert p.file == str(path)
    assert "line 4" in p.reason


def test_missing_file_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "bed.toml"
    (p,) = problems_of(path)
    assert p.file == str(path)
    assert str(path) in str(ConfigError([p]))


def test_not_utf8_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bed.toml"
    path.write_bytes(BED.encode() + b"# \xff\xfe\n")
    (p,) = problems_of(path)
    assert p.file == str(path)


# ---------------------------------------------------------------- environment overrides


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, BED + '[broker]\nurl = "mqtt://file-host:1883"\npassword = "from-file"\n'
    )
    s = load_settings(
        path,
        environ={
            "VIGIL_BROKER__URL": "mqtts://ward.example:8884",
            "VIGIL_BROKER__PASSWORD": SECRET,
            "UNRELATED": "x",
        },
    )
    assert s.broker.url == "mqtts://ward.example:8884"
    assert (s.broker.host, s.broker.port, s.broker.tls) == ("ward.example", 8884, True)
    assert s.broker.password is not None
    assert s.broker.password.get_secret_value() == SECRET


def test_env_override_fills_a_section_the_file_lacks(tmp_path: Path) -> None:
    path = write(tmp_path, BED)
    s = load_settings(path, environ={"VIGIL_BROKER__URL": "mqtt://10.1.2.3"})
    assert (s.broker.host, s.broker.port) == ("10.1.2.3", 1883)
    assert load_settings(path, environ={}).broker.url == "mqtt://127.0.0.1:1883"


def test_explicit_environ_replaces_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BED + '[broker]\nurl = "mqtt://file-host"\n')
    monkeypatch.setenv("VIGIL_BROKER__URL", "mqtt://process-env")
    assert load_settings(path, environ={}).broker.host == "file-host"
    assert load_settings(path).broker.host == "process-env"


def test_bad_env_override_is_a_located_problem(tmp_path: Path) -> None:
    path = write(tmp_path, BED)
    problems = problems_of(
        path, {"VIGIL_BROKER__URL": "http://h", "VIGIL_BROKER__KEEPALIVE_S": "x"}
    )
    assert sorted(keys(problems)) == ["broker.keepalive_s", "broker.url"]
    assert {p.file for p in problems} == {str(path)}


def test_password_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, BED + MQTT_DRIVER)
    s = load_settings(path, environ={"VIGIL_BROKER__PASSWORD": SECRET})
    assert s.broker.password is not None
    assert s.broker.password.get_secret_value() == SECRET
    for shown in (
        repr(s),
        str(s),
        repr(s.broker),
        str(s.broker),
        repr(s.broker.password),
        str(s.broker.password),
        s.model_dump_json(),
        str(s.model_dump()),
    ):
        assert SECRET not in shown


def test_password_from_file_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, BED + f'[broker]\npassword = "{SECRET}"\n')
    s = load_settings(path, environ={})
    assert s.broker.password is not None
    assert s.broker.password.get_secret_value() == SECRET
    assert SECRET not in repr(s)
    assert SECRET not in str(s)


def test_password_not_in_problems_of_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, BED + "[broker]\nkeepalive_s = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"VIGIL_BROKER__PASSWORD": SECRET})
    assert SECRET not in str(info.value)


# ---------------------------------------------------------------- relative paths


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "vigil"
    path = write(
        folder,
        BED + '[journal]\npath = "state/j.sqlite"\n[alarms]\npolicy = "site/alarms.toml"\n',
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(path, environ={})
    assert s.journal.path == folder / "state" / "j.sqlite"
    assert s.alarms.policy == folder / "site" / "alarms.toml"


def test_relative_path_given_by_env_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    path = write(folder, BED)
    monkeypatch.chdir(tmp_path)
    s = load_settings(path, environ={"VIGIL_JOURNAL__PATH": "j.sqlite"})
    assert s.journal.path == folder / "j.sqlite"


def test_relative_path_ignores_a_same_named_file_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The configured policy is the one next to the config; a stray file of that name in the
    # working directory must not be picked instead (a different alarm policy would run).
    folder = tmp_path / "etc"
    path = write(folder, BED + '[alarms]\npolicy = "alarms.toml"\n')
    cwd = tmp_path / "cwd"
    write(cwd, "# some other policy\n", name="alarms.toml")
    monkeypatch.chdir(cwd)
    s = load_settings(path, environ={})
    assert s.alarms.policy == folder / "alarms.toml"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path, BED + '[journal]\npath = "/srv/vigil/j.sqlite"\n')
    assert load_settings(path, environ={}).journal.path == Path("/srv/vigil/j.sqlite")


# ---------------------------------------------------------------- validators, property-based

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _bed_data(ward: Any) -> dict[str, Any]:
    return {"bed": {"ward": ward, "bed": "b3"}}


@given(st.text(max_size=70))
def test_ward_id_accepted_exactly_when_letters_digits_dash_underscore(ward: str) -> None:
    if _ID_RE.fullmatch(ward):
        assert parse_settings(_bed_data(ward), file="x.toml").prefix == f"vigil/{ward}/b3"
    else:
        with pytest.raises(ConfigError) as info:
            parse_settings(_bed_data(ward), file="x.toml")
        assert keys(info.value.problems) == ["bed.ward"]
        assert info.value.problems[0].file == "x.toml"


@given(st.integers(min_value=-100, max_value=70_000))
def test_port_accepted_exactly_when_a_tcp_port(port: int) -> None:
    data = {**_bed_data("w1"), "broker": {"url": f"mqtt://broker.local:{port}"}}
    if 1 <= port <= 65535:
        assert parse_settings(data, file="x.toml").broker.port == port
    else:
        with pytest.raises(ConfigError) as info:
            parse_settings(data, file="x.toml")
        assert keys(info.value.problems) == ["broker.url"]


_JSONISH = json_values(text=20, keys=8, leaves=10, items=3, finite=False)


@given(
    section=st.sampled_from(["broker", "journal", "alarms", "metrics", "timeouts", "clock"]),
    key=st.text(max_size=15),
    value=_JSONISH,
)
def test_arbitrary_values_give_settings_or_located_problems(
    section: str, key: str, value: Any
) -> None:
    data = {**_bed_data("w1"), section: {key: value}}
    try:
        parse_settings(data, file="x.toml")
    except ConfigError as exc:
        for p in exc.problems:
            assert p.file == "x.toml"
            assert p.key.startswith(section)


@given(value=_JSONISH)
def test_arbitrary_driver_entries_give_settings_or_located_problems(value: Any) -> None:
    data = {**_bed_data("w1"), "drivers": [value]}
    try:
        parse_settings(data, file="x.toml")
    except ConfigError as exc:
        for p in exc.problems:
            assert p.key.startswith("drivers[0]")


@pytest.mark.parametrize(
    ("broker", "reason"),
    [
        ('url = "mqtt://b:1883"\nca_file = "/ca.crt"', "ca_file given, but url is not mqtts://"),
        ('url = "mqtts://b"\nkey_file = "/k.pem"', "key_file without cert_file"),
    ],
)
def test_tls_files_need_tls(tmp_path: Path, broker: str, reason: str) -> None:
    text = f'[bed]\nward = "w1"\nbed = "b1"\n[broker]\n{broker}\n'
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), environ={})
    (problem,) = e.value.problems
    assert problem.key == "broker"
    assert reason in problem.reason


def test_a_bad_driver_broker_url_never_shows_its_password(tmp_path: Path) -> None:
    text = (
        '[bed]\nward = "w1"\nbed = "b1"\n[[drivers]]\nkind = "mqtt"\ndevice_id = "m"\n'
        'topic = "t"\nbroker_url = "mqtt://user:s3cret@host:0"\n'
    )
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), environ={})
    assert "s3cret" not in str(e.value)
    (problem,) = e.value.problems
    assert problem.key == "drivers[0].broker_url"


def test_env_overrides_reach_nested_tables_and_a_driver_by_its_device_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BED
        + '[commands.principals.station-w1]\nmay = ["acknowledge"]\n'
        + '[[drivers]]\nkind = "masimo"\ndevice_id = "ox"\nport = "/dev/ttyUSB0"\n'
        + MQTT_DRIVER,
    )
    s = load_settings(
        path,
        environ={
            # three levels deep: [commands.principals.station-w1] speaks_for_others
            "VIGIL_COMMANDS__PRINCIPALS__STATION-W1__SPEAKS_FOR_OTHERS": "true",
            # the [[drivers]] entry whose device_id is ox (names are read without case)
            "VIGIL_DRIVERS__OX__PORT": "/dev/ttyUSB1",
            "VIGIL_DRIVERS__OX__QUIET_S": "7.5",
        },
    )
    assert s.commands.principals["station-w1"].speaks_for_others is True
    assert s.commands.principals["station-w1"].may == ["acknowledge"]
    ox = next(d for d in s.drivers if d.device_id == "ox")
    assert (getattr(ox, "port", None), getattr(ox, "quiet_s", None)) == ("/dev/ttyUSB1", 7.5)
    mon1 = next(d for d in s.drivers if d.device_id == "mon1")
    assert getattr(mon1, "topic", None) == "monitors/mon1/samples"


def test_an_override_for_a_device_the_file_lacks_is_a_located_problem(tmp_path: Path) -> None:
    path = write(tmp_path, BED + MQTT_DRIVER)
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={"VIGIL_DRIVERS__PUMP__PORT": "/dev/ttyUSB1"})
    (problem,) = err.value.problems
    assert (problem.file, problem.key) == (str(path), "drivers")
    assert "no [[drivers]] entry has device_id 'pump'" in problem.reason
