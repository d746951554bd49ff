"""``python -m rainbridge.cli``: the same as the ``rainbridge`` command."""

from rainbridge.cli import main

main()
