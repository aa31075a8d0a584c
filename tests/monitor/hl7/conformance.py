"""What a PCD profile validator checks: hl7apy's v2.6 structures (strict) and the IHE usage rules.

hl7apy has no ORU_R40 structure; PCD-04 uses the ORU_R01 layout, so an R40 is validated as an
R01 with the same segments. The IHE rules below are the ones the Gazelle/IPF PCD profiles add
to the base standard (required fields per segment, OBX-6 with a value, OBX-14 without OBR-7).
"""

from __future__ import annotations

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

PCD01 = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
PCD04 = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO"
# facet -> attribute code, 68480-68485 (the widely copied 68164-68168 are other attributes)
FACET_CODES = {3: "68481", 4: "68482", 5: "68483", 6: "68484", 7: "68485"}
FORBIDDEN_CODES = {"68164", "68165", "68166", "68167", "68168"}


def _field(fields: list[str], n: int) -> str:
    return fields[n] if n < len(fields) else ""


def ihe_problems(text: str) -> list[str]:
    """Every IHE PCD usage rule `text` breaks (empty: none)."""
    problems: list[str] = []
    segments = [s.split("|") for s in text.split("\r") if s]
    if not segments or segments[0][0] != "MSH":
        return ["first segment is not MSH"]
    msh = ["MSH", "|", *segments[0][1:]]  # msh[n] is MSH-n
    for n in (2, 3, 7, 9, 10, 11, 12, 21):
        if not _field(msh, n):
            problems.append(f"MSH-{n} empty")
    if (_field(msh, 15), _field(msh, 16)) != ("AL", "NE"):
        problems.append("MSH-15/16 not AL/NE")
    kind = _field(msh, 9)
    profile = {"ORU^R01^ORU_R01": PCD01, "ORU^R40^ORU_R40": PCD04}.get(kind)
    if profile is None or _field(msh, 21) != profile:
        problems.append(f"MSH-21 {_field(msh, 21)!r} is not the profile of {kind!r}")
    obr7 = ""
    for fields in segments[1:]:
        name = fields[0]
        if name == "PID":
            for n in (3, 5):
                if not _field(fields, n).strip("^"):
                    problems.append(f"PID-{n} empty")
        elif name == "PV1":
            if not _field(fields, 2):
                problems.append("PV1-2 empty")
        elif name == "OBR":
            for n in (1, 2, 3, 4):
                if not _field(fields, n):
                    problems.append(f"OBR-{n} empty")
            obr7 = _field(fields, 7)
            if kind == "ORU^R40^ORU_R40" and _field(fields, 4) != "196616^MDC_EVT_ALARM^MDC":
                problems.append("PCD-04 OBR-4 is not MDC_EVT_ALARM")
        elif name == "OBX":
            sid = _field(fields, 1)
            for n in (1, 3, 4, 11):
                if not _field(fields, n):
                    problems.append(f"OBX[{sid}]-{n} empty")
            code = _field(fields, 3).split("^")[0]
            if code in FORBIDDEN_CODES:
                problems.append(f"OBX[{sid}]-3 uses the colliding code {code}")
            if _field(fields, 5):
                if not _field(fields, 2):
                    problems.append(f"OBX[{sid}]-2 empty with a value")
                if _field(fields, 2) == "NM" and not _field(fields, 6):
                    problems.append(f"OBX[{sid}]-6 empty with a value")
            if _field(fields, 2) == "NM":
                try:
                    float(_field(fields, 5))
                except ValueError:
                    problems.append(f"OBX[{sid}]-5 is not a number")
            is_device = _field(fields, 11) == "X" and not _field(fields, 5)
            if not obr7 and not _field(fields, 14) and not is_device:
                problems.append(f"OBX[{sid}]-14 empty while OBR-7 is empty")
            if kind == "ORU^R40^ORU_R40":
                facet = int(_field(fields, 4).rsplit(".", 1)[-1])
                if facet != int(sid):
                    problems.append(f"OBX[{sid}] facet {facet} out of place")
                if facet in FACET_CODES and code != FACET_CODES[facet]:
                    problems.append(f"OBX[{sid}] facet {facet} code {code}")
    return problems


def validate(text: str) -> None:
    """Fail unless `text` passes hl7apy's strict v2.6 validation and the IHE rules."""
    layout = text.replace("|ORU^R40^ORU_R40|", "|ORU^R01^ORU_R01|", 1)
    message = parse_message(layout, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate() is True
    assert message.msh.msh_12.value == "2.6"
    problems = ihe_problems(text)
    assert not problems, problems
