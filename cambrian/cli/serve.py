"""``cambrian serve``: an OpenAI-compatible HTTP server for a model (``/v1/chat/completions`` with images and
streaming, ``/v1/models``, ``/health``); requests that arrive together are decoded in one batch."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from ..errors import InputError
from .tower_flag import add_tower_argument, towers_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory, hub id, or model preset name (e.g. nano)")
    add_tower_argument(p)
    p.add_argument(
        "--model-name",
        default=None,
        help='the id clients send as "model" (default: the preset name or the checkpoint directory\'s name)',
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    key = p.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1 requests (default: $CAMBRIAN_API_KEY, else none). A key on "
        "the command line is visible to every user of the machine (ps): prefer the variable or --api-key-file",
    )
    key.add_argument(
        "--api-key-file",
        metavar="PATH",
        default=None,
        help="read the API key from the first line of this file (keep it readable by you only)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    g = p.add_argument_group("batching")
    g.add_argument("--max-batch-size", type=int, default=16, help="requests decoded together (default 16)")
    g.add_argument(
        "--batch-window-ms",
        type=float,
        default=10.0,
        help="how long a request waits for others to batch with (default 10 ms; 0 = no wait)",
    )
    g = p.add_argument_group("limits")
    g.add_argument(
        "--max-tokens",
        type=int,
        default=1024,
        help="largest max_tokens a request may ask for; also the default (default 1024)",
    )
    g.add_argument(
        "--max-concurrency",
        type=int,
        default=64,
        help="requests admitted at once (body being read, queued or running); more get HTTP 429 (default 64)",
    )
    g.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        help="open connections at once; more are answered 503 and closed (default 1000; idle sockets never take a "
        "request's place)",
    )
    g.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds a connection has to send its request headers, else it is closed (default 10)",
    )
    g.add_argument(
        "--body-timeout",
        type=float,
        default=60.0,
        help="seconds a request has to send its body, else HTTP 408 (default 60)",
    )
    g.add_argument("--max-body-mb", type=float, default=20.0, help="request body limit in MiB (default 20)")
    g.add_argument(
        "--max-image-pixels",
        type=int,
        default=4096 * 4096,
        help="width x height limit of one image, checked before decoding (default 4096x4096)",
    )
    g.add_argument(
        "--max-image-aspect",
        type=float,
        default=64.0,
        help="longer side / shorter side limit of one image, checked before decoding (default 64)",
    )
    g.add_argument("--max-images", type=int, default=8, help="images per request (default 8)")
    g.add_argument(
        "--max-pixels-in-flight",
        type=int,
        default=2**28,
        help="decoded image pixels of all queued and running requests together; more get HTTP 429 "
        "(default 2^28, about 0.8 GB as RGB)",
    )
    g.add_argument(
        "--allow-local-images",
        metavar="ROOT",
        default=None,
        help="accept image_url file paths / file:// URLs under ROOT (default: data: URLs only)",
    )
    g.add_argument(
        "--default-temperature",
        type=float,
        default=1.0,
        help="temperature for requests that send none (default 1.0, as OpenAI's API; 0 = greedy)",
    )
    g.add_argument(
        "--graceful-timeout",
        type=float,
        default=60.0,
        help="on Ctrl-C / SIGTERM, seconds in-flight requests may still run (default 60)",
    )
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (info logs every request; default warning)",
    )


def default_model_name(spec: str) -> str:
    p = Path(spec)
    return p.resolve().name if p.is_dir() else spec


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_from_args(args) -> str | None:
    """``--api-key``, else the first line of ``--api-key-file``, else ``$CAMBRIAN_API_KEY``; None: no key."""
    if args.api_key_file:
        from ..errors import UserError
        from ..typed import read_config_text

        key = (read_config_text(args.api_key_file, 64 << 10).splitlines() or [""])[0].strip()
        if not key:
            raise UserError(f"--api-key-file {args.api_key_file}: the file holds no key")
        return key
    return args.api_key or os.environ.get("CAMBRIAN_API_KEY") or None


def ensure_file_descriptors(max_connections: int) -> None:
    """Raise the soft open-file limit towards ``max_connections`` plus room for the model's files; warn when the hard
    limit is lower (connections past it fail at accept, before the server's own cap can answer them)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    need = max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
        if soft < need:
            print(
                f"warning: the open-file limit ({soft}) is below --max-connections {max_connections} + 256; lower "
                "--max-connections or raise `ulimit -n`",
                file=sys.stderr,
            )


def run(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        from ..errors import UserError

        raise UserError(
            f"cambrian serve needs FastAPI and uvicorn ({e.name} is missing): pip install -e '.[serve]'"
        ) from None
    from ..serve.settings import ServeSettings
    from .chat import load_model, warn_if_bare

    settings = ServeSettings(
        model_name=args.model_name or default_model_name(args.model),
        api_key=api_key_from_args(args),
        max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms,
        max_tokens_cap=args.max_tokens,
        max_concurrency=args.max_concurrency,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        max_image_aspect=args.max_image_aspect,
        max_images=args.max_images,
        max_pixels_in_flight=args.max_pixels_in_flight,
        local_image_root=Path(args.allow_local_images) if args.allow_local_images else None,
        default_temperature=args.default_temperature,
        graceful_timeout_s=args.graceful_timeout,
    )
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    if not _is_loopback(args.host) and not settings.api_key:
        print(
            f"warning: listening on {args.host} without --api-key: anyone who can reach this port can use the model",
            file=sys.stderr,
        )
    from ..serve.server import bind_socket, run_server

    ensure_file_descriptors(settings.max_connections)
    sock = bind_socket(args.host, args.port)  # a busy port fails now, not after loading the model
    model = load_model(args.model, args.device, towers_from_args(args))
    warn_if_bare(model, args.model)

    def ready(url: str) -> None:
        print(
            f"serving {settings.model_name!r} on {url}/v1 (OpenAI-compatible; Ctrl-C stops after the requests in "
            f"flight)",
            file=sys.stderr,
            flush=True,
        )

    try:
        run_server(model, settings, host=args.host, port=args.port, log_level=args.log_level, sock=sock, on_ready=ready)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after the graceful shutdown
        pass
    print("stopped", file=sys.stderr)
    return 0
