"""What every layer of Vigil shares; it imports nothing else of Vigil (docs/ARCHITECTURE.md)."""
