"""The numpy alarm core: policy, engine, replay (clinical/ALARMS.md)."""
