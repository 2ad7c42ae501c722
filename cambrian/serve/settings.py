"""Server settings (limits, batching, auth). Built by ``cambrian serve`` from its flags; checked by the typed loader
(one ``ConfigError`` naming the field)."""

from __future__ import annotations

from pathlib import Path

from ..typed import ConfigError, Int, Num, OptNum, OptStr, Str, typed_config
from ..utils.image_limits import MAX_ASPECT

# decoded image pixels of all requests queued or running (~0.8 GB as RGB); 429 over
PIXELS_IN_FLIGHT = 2**28


@typed_config(label="serve")
class ServeSettings:
    model_name: Str  # the id clients pass as "model" and GET /v1/models lists
    api_key: OptStr = None  # when set, every /v1 request needs "Authorization: Bearer <key>"
    max_batch_size: Int(ge=1) = 16  # requests decoded together
    batch_window_ms: Num(ge=0) = 10.0  # how long the first request of a batch waits for company
    max_tokens_cap: Int(ge=1) = 1024  # largest max_tokens a request may ask for (also the default when it asks none)
    max_concurrency: Int(ge=1) = 64  # requests admitted (body being read, queued or running); more get HTTP 429
    max_connections: Int(ge=1) = 1000  # open connections; more are answered 503 and closed (idle ones take no slot)
    header_timeout_s: Num(gt=0) = 10.0  # a connection's request headers must arrive within this (idle / slowloris)
    body_timeout_s: Num(gt=0) = 60.0  # a request's body must arrive within this (HTTP 408)
    max_body_bytes: Int(ge=1) = 20 * 2**20  # request body limit (HTTP 413)
    max_image_pixels: Int(ge=1) = 4096 * 4096  # width x height of one image, checked before decoding (image bombs)
    max_image_aspect: Num(ge=1) = MAX_ASPECT  # longer / shorter side of one image, checked before decoding
    max_images: Int(ge=1) = 8  # images in one request
    max_pixels_in_flight: Int(ge=1) = PIXELS_IN_FLIGHT
    local_image_root: Path | None = None  # when set, image_url may be a file path / file:// URL under this root
    default_temperature: Num(ge=0, le=2) = 1.0  # for requests without "temperature" (OpenAI's default); 0 = greedy
    graceful_timeout_s: OptNum(ge=0) = 60.0  # on shutdown, how long in-flight requests may still run

    def __post_init__(self):
        if self.max_pixels_in_flight < self.max_image_pixels:
            raise ConfigError(
                f"max_pixels_in_flight ({self.max_pixels_in_flight}) must be at least max_image_pixels "
                f"({self.max_image_pixels})"
            )
        if self.max_connections <= self.max_concurrency:
            raise ConfigError(
                f"max_connections ({self.max_connections}) must be above max_concurrency "
                f"({self.max_concurrency}): requests over the limit need a connection to get their 429"
            )
        if not self.model_name:
            raise ConfigError("the model name must not be empty")
        if self.local_image_root is not None:
            root = Path(self.local_image_root).expanduser().resolve()
            if not root.is_dir():
                raise FileNotFoundError(f"--allow-local-images: {self.local_image_root} is not a directory")
            self.local_image_root = root
