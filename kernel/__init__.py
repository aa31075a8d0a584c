"""What every layer of Vigil shares; it imports nothing else of Vigil.

The vocabulary, the injectable clock, config-file reading with located errors, where shipped data
lives, the config models a driver is given and the task helpers. The import-linter contracts in
pyproject.toml (run by scripts/test) keep the layers so (docs/ARCHITECTURE.md "Layers").
"""
