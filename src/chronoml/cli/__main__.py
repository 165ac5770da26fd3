"""``python -m chronoml.cli``: the command line."""

from chronoml.cli import main

main()
