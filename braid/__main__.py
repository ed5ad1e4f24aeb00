"""``python -m braid``: the ``braid`` command."""

from __future__ import annotations

import sys

from braid.cli import main

if __name__ == "__main__":
    sys.exit(main())
