"""``python -m chronoml``: the command line."""

from chronoml.cli import main

main()
