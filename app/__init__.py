"""germseg web app: a REST API under ``/api`` and a Gradio UI at ``/``, on one FastAPI server.

The app is a thin adapter over :mod:`segmentation.pipeline`: it stores uploads in
server-generated job folders, runs one job at a time on a single worker thread, caches the
network's boundary predictions so that re-tuning skips the network, and expires old results.
"""

from __future__ import annotations
