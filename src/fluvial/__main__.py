"""``python -m fluvial`` runs the CLI."""

from fluvial.cli import main

main()
