"""A fresh clone is the whole project: it reads nothing beside itself and cites only its own docs.

The project's tests, scripts and CI run from a clone with nothing beside it, so no file of the
repository may read or point at a folder outside it; and every document a comment or the README
cites (`docs/ALARMS.md`, any `*.md` path) must be in the repository, so a reader can follow it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

from kernel.vocabulary import SystemAlarm
from monitor.cli import build_parser
from monitor.commands import _CMD_NAMES

ROOT = Path(__file__).resolve().parents[1]

# The outside folder the project once read, spelled so that this file does not match itself.
_OUTSIDE = "sha" + "red"
OUTSIDE_REFERENCE = re.compile(
    r"\.\./+" + _OUTSIDE + r"\b"  # a relative path out of the checkout
    r"|\b" + _OUTSIDE + r"/(?:clinical|reference|examples|ARCHITECTURE)\b"  # its documents
    r"|[\"']" + _OUTSIDE + r"[\"']\s*/",  # a pathlib join onto it
)

# A document path: `docs/...`, or anything ending in `.md` (ALARMS.md, config/x/README.md).
_DOC_PATH = re.compile(r"(?<![\w./$-])(?:docs/[\w./-]*[\w/]|(?:\.{1,2}/|[\w-]+/)*[\w-]+\.md)\b")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
_DATA_SUFFIXES = (".csv", ".jsonl", ".bin", ".raw", ".png", ".sqlite")


def _project_files() -> list[Path]:
    """Tracked files, and new ones not ignored, so a file is checked before it is committed."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    names = [n for n in proc.stdout.decode().split("\0") if n]
    assert names, "git lists no file of the project"
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def test_outside_reference_pattern_catches_what_it_claims() -> None:
    parent = ".." + "/" + _OUTSIDE
    examples = [
        f"`{parent}/clinical/examples/` has worked examples",
        f'Path(__file__).parents[3] / "{_OUTSIDE}" / "clinical"',
        f"source is in {_OUTSIDE}/clinical/SOURCES.md",
    ]
    assert all(OUTSIDE_REFERENCE.search(e) for e in examples)
    assert not OUTSIDE_REFERENCE.search("a value shared by every rule (docs/ALARMS.md)")


def test_no_project_file_reads_or_cites_a_folder_beside_the_checkout() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _project_files()
        for number, line in enumerate(_text(path).splitlines(), 1)
        if OUTSIDE_REFERENCE.search(line)
    ]
    assert not hits, "the repository must be self-contained:\n" + "\n".join(hits)


def _cited_documents(path: Path) -> list[tuple[int, str]]:
    cited: list[tuple[int, str]] = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        cited.extend((number, m.group(0)) for m in _DOC_PATH.finditer(_URL.sub(" ", line)))
    return cited


def _exists(citing: Path, cited: str) -> bool:
    """A cited path is relative to the repository root, or (a Markdown link) to the citing file."""
    return any((base / cited).exists() for base in (ROOT, citing.parent))


def test_document_path_pattern_finds_citations() -> None:
    line = 'see docs/ALARMS.md Reading 5, PROTOCOL.md step 2 and "config/mosquitto/README.md".'
    assert [m.group(0) for m in _DOC_PATH.finditer(line)] == [
        "docs/ALARMS.md",
        "PROTOCOL.md",
        "config/mosquitto/README.md",
    ]


def test_every_document_cited_by_a_file_of_the_project_is_in_the_repository() -> None:
    missing = [
        f"{path.relative_to(ROOT)}:{number}: {cited}"
        for path in _project_files()
        # this file's own examples of citations are not citations
        if not path.name.endswith(_DATA_SUFFIXES) and path != Path(__file__).resolve()
        for number, cited in _cited_documents(path)
        if not _exists(path, cited)
    ]
    assert not missing, "cited documents the repository does not have:\n" + "\n".join(missing)


def test_readme_and_docs_cover_the_contracts_and_the_policy() -> None:
    for name in ("ARCHITECTURE.md", "ALARMS.md", "PROTOCOL.md", "SOURCES.md"):
        assert (ROOT / "docs" / name).is_file(), name
    readme = _text(ROOT / "README.md")
    assert "docs/ARCHITECTURE.md" in readme
    assert "docs/ALARMS.md" in readme
    assert "tests/data/clinical/" in readme


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_ci_runs_the_tests_from_a_clone_with_nothing_beside_it(tmp_path: Path) -> None:
    """`.ci/run` in a checkout with an outside folder beside it: the tests must not see it.

    The checkout is a real git repository holding the real `.ci/run` and a `scripts/test` that
    records where it ran and exits 3; the system tools CI would install are stubs on PATH.
    """
    (tmp_path / _OUTSIDE / "clinical").mkdir(parents=True)
    repo = tmp_path / "vigil"
    (repo / ".ci").mkdir(parents=True)
    (repo / "scripts").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", repo / ".ci" / "run")
    record = tmp_path / "ran-in"
    _stub(repo / "scripts", "test", f'echo "$PWD" $(ls -A ..) >> "{record}"; exit 3\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mosquitto", "tmux", "openssl", "systemd-analyze", "apt-get", "sudo"):
        _stub(bin_dir, tool, "exit 0\n")
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "checkout"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [str(repo / ".ci" / "run")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr  # scripts/test's status, kept
    first_run = record.read_text().splitlines()[0].split()
    ran_in = Path(first_run[0])
    assert ran_in != repo
    assert not ran_in.is_relative_to(tmp_path)
    assert first_run[1:] == [ran_in.name], "the clone must have nothing beside it"
    assert not ran_in.exists(), "the clone is removed afterwards"


def _codes(node: object) -> set[str]:
    """Every `code = "..."` anywhere in a parsed policy file."""
    if isinstance(node, dict):
        found = {node["code"]} if isinstance(node.get("code"), str) else set()
        return found.union(*(_codes(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_codes(v) for v in node))
    return set()


def test_docs_describe_every_rule_of_the_shipped_policy() -> None:
    policy = tomllib.loads(_text(ROOT / "config" / "alarms.toml"))
    codes = _codes(policy)
    assert len(codes) >= 15  # the file's rules, as parsed
    alarms = _text(ROOT / "docs" / "ALARMS.md")
    undocumented = sorted(c for c in codes if f"| `{c}` |" not in alarms)
    assert not undocumented, "rules of config/alarms.toml missing from docs/ALARMS.md"
    architecture = _text(ROOT / "docs" / "ARCHITECTURE.md")
    assert all(f"`{code}`" in architecture for code in SystemAlarm)


def test_precise_readings_keep_their_numbers() -> None:
    """Code cites "docs/ALARMS.md Reading 5": the list is numbered 1 to 15, in order."""
    alarms = _text(ROOT / "docs" / "ALARMS.md")
    section = alarms.split("## Precise reading", 1)[1]
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \*\*", section, flags=re.MULTILINE)]
    assert numbers == list(range(1, 16))


def test_docs_list_every_command_line_tool_and_nurse_command() -> None:
    architecture = _text(ROOT / "docs" / "ARCHITECTURE.md")
    parser = build_parser()
    tools = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert tools.choices
    missing = [name for name in tools.choices if f"`vigil {name}" not in architecture]
    assert not missing, "commands missing from docs/ARCHITECTURE.md"
    commands = architecture.split("## Commands", 1)[1]
    missing = sorted(name for name in _CMD_NAMES if f"| `{name}` |" not in commands)
    assert not missing, "nurse commands missing from docs/ARCHITECTURE.md"
