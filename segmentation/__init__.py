"""germseg: 3D cell segmentation of two-channel C. elegans germline stacks.

Stages, one subpackage each, in the order data flows through them:
``io`` → ``model`` / ``inference`` → ``watershed`` → ``graph`` → ``postprocess`` → ``outputs``.
``pipeline`` chains them; ``cli`` and the web app in ``app/`` are thin adapters over it.
"""

from __future__ import annotations

__version__ = "0.1.0"
