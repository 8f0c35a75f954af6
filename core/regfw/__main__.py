"""``python -m regfw`` runs the CLI."""

from regfw.cli import main

main()
