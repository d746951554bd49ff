"""``python -m rainbridge.node.migrations revision "what changes"``: write the next revision.

For developers of Rainbridge: after changing :mod:`rainbridge.node.tables`, this writes
``versions/NNNN_<what_changes>.py`` with the operations that take the head's schema to the
tables' (Alembic's autogenerate, in batch mode so that SQLite can apply them). Review it,
then commit it with the change to the tables. ``heads`` prints the head revision.
"""

from __future__ import annotations

import sys

from rainbridge.node.migrations import head, revision


def main(argv: list[str]) -> int:
    if len(argv) == 1 and argv[0] == "heads":
        print(head())
        return 0
    if len(argv) == 2 and argv[0] == "revision" and argv[1].strip():
        print(f"wrote {revision(argv[1])}; review it, then commit it with the tables")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
