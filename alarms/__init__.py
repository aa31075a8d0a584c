"""The numpy alarm core: policy, engine, replay (docs/ALARMS.md)."""
