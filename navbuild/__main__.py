"""``python -m navbuild`` runs the command line."""

from navbuild.cli import main

main()
