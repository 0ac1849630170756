"""``python -m node`` runs the ``remixnet`` CLI (used by tests and scripts)."""

from node.cli import main

main()
