"""``python -m tunelens``: the same as the ``tunelens`` command."""

from tunelens.cli import main

main()
