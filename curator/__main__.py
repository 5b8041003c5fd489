"""Run the command line with ``python -m curator``."""

from curator.cli import main

main()
