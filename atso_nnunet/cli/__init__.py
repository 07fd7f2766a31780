"""Command-line tools: thin wrappers, each ``main(argv=None) -> int``."""
