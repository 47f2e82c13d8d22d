"""Server settings, read from ``GERMSEG_*`` environment variables with safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from segmentation.errors import InputError
from segmentation.io.decoded_size import DEFAULT_MAX_DECODED_BYTES
from segmentation.parameters import DEFAULT_MAX_VOXELS

#: Environment variables read by :meth:`Settings.from_environment`.
ENVIRONMENT_VARIABLES = {
    "results_dir": "GERMSEG_RESULTS_DIR",
    "results_ttl_hours": "GERMSEG_RESULTS_TTL_HOURS",
    "sweep_interval_seconds": "GERMSEG_SWEEP_INTERVAL_SECONDS",
    "max_upload_mb": "GERMSEG_MAX_UPLOAD_MB",
    "max_voxels": "GERMSEG_MAX_VOXELS",
    "max_decoded_mb": "GERMSEG_MAX_DECODED_MB",
    "cache_mb": "GERMSEG_CACHE_MB",
    "max_queue": "GERMSEG_MAX_QUEUE",
    "api_token": "GERMSEG_API_TOKEN",
}
#: Settings kept as text; all others are numbers or paths.
_TEXT_SETTINGS = frozenset({"api_token"})


@dataclass(frozen=True)
class Settings:
    """Limits and locations of one server.

    Attributes
    ----------
    results_dir : Path
        Where job folders (uploads while processing, then results) are written.
    results_ttl_hours : float
        Finished results older than this are deleted by the periodic sweep.
    sweep_interval_seconds : float
        How often the sweep runs.
    max_upload_mb : float
        Largest accepted upload, in MiB (REST and UI).
    max_voxels : int
        Largest accepted Z * Y * X of a stack.
    max_decoded_mb : float
        Largest accepted size of a stack's decoded data, in MiB, checked from the TIFF's
        header before decoding (a small compressed file can decode to gigabytes).
    cache_mb : float
        Memory budget of the boundary-prediction cache, in MiB (0 disables it).
    max_queue : int
        Most jobs waiting at once; further submissions are refused with HTTP 503.
    api_token : str or None
        When set, every ``/api`` route but ``/api/health`` needs the header
        ``Authorization: Bearer <token>`` and the web UI asks for the token once.
    """

    results_dir: Path = Path("results")
    results_ttl_hours: float = 24.0
    sweep_interval_seconds: float = 600.0
    max_upload_mb: float = 1024.0
    max_voxels: int = DEFAULT_MAX_VOXELS
    max_decoded_mb: float = DEFAULT_MAX_DECODED_BYTES / 2**20
    cache_mb: float = 2048.0
    max_queue: int = 64
    api_token: str | None = field(default=None, repr=False)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_decoded_bytes(self) -> int:
        return int(self.max_decoded_mb * 1024 * 1024)

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_mb * 1024 * 1024)

    @property
    def example_dir(self) -> Path:
        """Folder of the bundled example stack (never swept)."""
        return self.results_dir / "example"

    @classmethod
    def from_environment(
        cls, environment: dict[str, str] | None = None, **overrides: object
    ) -> Settings:
        """Settings from ``GERMSEG_*`` variables; keyword arguments that are not None win.

        Raises
        ------
        InputError
            When a variable holds something that is not a number.
        """
        environment = dict(os.environ if environment is None else environment)
        values: dict[str, object] = {}
        for name, variable in ENVIRONMENT_VARIABLES.items():
            text = environment.get(variable, "").strip()
            if not text:
                continue
            if name in _TEXT_SETTINGS:
                values[name] = text
                continue
            default = getattr(cls, name)
            if isinstance(default, Path):
                values[name] = Path(text)
                continue
            try:
                values[name] = type(default)(float(text))
            except ValueError as error:
                message = f"${variable}={text!r} is not a number; fix or unset it"
                raise InputError(message) from error
        values.update({key: value for key, value in overrides.items() if value is not None})
        if "results_dir" in values:
            values["results_dir"] = Path(values["results_dir"])
        return cls(**values)
