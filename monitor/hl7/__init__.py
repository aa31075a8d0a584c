"""`vigil hl7`: the ward gateway to the hospital, IHE PCD-01 vitals and PCD-04 alarms over MLLP."""
