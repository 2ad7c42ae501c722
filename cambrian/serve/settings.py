"""Server settings (limits, batching, auth). Built by ``cambrian serve`` from its flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..models.encoders.preprocess import MAX_ASPECT


@dataclass
class ServeSettings:
    model_name: str  # the id clients pass as "model" and GET /v1/models lists
    api_key: str | None = None  # when set, every /v1 request needs "Authorization: Bearer <key>"
    max_batch_size: int = 16  # requests decoded together
    batch_window_ms: float = 10.0  # how long the first request of a batch waits for company
    max_tokens_cap: int = 1024  # largest max_tokens a request may ask for (also the default when it asks none)
    max_concurrency: int = 64  # requests admitted (body being read, queued or running); more get HTTP 429
    max_connections: int = 1000  # open connections; more are answered 503 and closed (idle ones take no request slot)
    header_timeout_s: float = 10.0  # a connection's request headers must arrive within this (idle / slowloris sockets)
    body_timeout_s: float = 60.0  # a request's body must arrive within this (HTTP 408)
    max_body_bytes: int = 20 * 2**20  # request body limit (HTTP 413)
    max_image_pixels: int = 4096 * 4096  # width x height of one image, checked before decoding (image bombs)
    max_image_aspect: float = (
        MAX_ASPECT  # longer side / shorter side of one image, checked before decoding (image bombs)
    )
    max_images: int = 8  # images in one request
    max_pixels_in_flight: int = (
        2**28
    )  # decoded image pixels of all requests queued or running (~0.8 GB as RGB); 429 over
    local_image_root: Path | None = None  # when set, image_url may be a file path / file:// URL under this root
    default_temperature: float = 1.0  # for requests without "temperature" (OpenAI's default); 0 = greedy
    graceful_timeout_s: float | None = 60.0  # on shutdown, how long in-flight requests may still run

    def __post_init__(self):
        for name in (
            "max_batch_size",
            "max_tokens_cap",
            "max_concurrency",
            "max_connections",
            "max_body_bytes",
            "max_image_pixels",
            "max_images",
            "max_pixels_in_flight",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"serve: {name} must be an integer >= 1, got {v!r}")
        if self.max_pixels_in_flight < self.max_image_pixels:
            raise ValueError(
                f"serve: max_pixels_in_flight ({self.max_pixels_in_flight}) must be at least "
                f"max_image_pixels ({self.max_image_pixels})"
            )
        for name in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"serve: {name} must be > 0, got {getattr(self, name)}")
        if self.max_connections <= self.max_concurrency:
            raise ValueError(
                f"serve: max_connections ({self.max_connections}) must be above max_concurrency "
                f"({self.max_concurrency}): requests over the limit need a connection to get their 429"
            )
        if not self.max_image_aspect >= 1.0:
            raise ValueError(f"serve: max_image_aspect must be >= 1, got {self.max_image_aspect}")
        if not 0.0 <= self.default_temperature <= 2.0:
            raise ValueError(f"serve: default_temperature must be in [0, 2], got {self.default_temperature}")
        if self.batch_window_ms < 0:
            raise ValueError(f"serve: batch_window_ms must be >= 0, got {self.batch_window_ms}")
        if not self.model_name:
            raise ValueError("serve: the model name must not be empty")
        if self.local_image_root is not None:
            root = Path(self.local_image_root).expanduser().resolve()
            if not root.is_dir():
                raise FileNotFoundError(f"--allow-local-images: {self.local_image_root} is not a directory")
            self.local_image_root = root
