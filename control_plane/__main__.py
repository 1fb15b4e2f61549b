"""``python -m control_plane`` runs the ``govplane`` command line."""

from control_plane.cli import app

app(prog_name="govplane")
