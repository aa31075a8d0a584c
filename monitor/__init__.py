"""The Vigil daemon: CLI, settings, session, journal, supervisor, publisher."""
