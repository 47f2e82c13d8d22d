"""``python -m segmentation`` is the same as the ``germseg`` command."""

from __future__ import annotations

import sys

from segmentation.cli import main

if __name__ == "__main__":
    sys.exit(main())
