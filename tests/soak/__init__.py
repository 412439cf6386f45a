"""The chaos soak (docs/architecture.md §8.4): ``python -m tests.soak``; see ``__main__``."""
