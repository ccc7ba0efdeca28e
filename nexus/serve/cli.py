"""Run the server: `python -m nexus.serve checkpoint=PATH_OR_HUB_ID [key=value ...]`.

The keys are the model's (`checkpoint`, `device`, `dtype`, `revision`, `trust_remote_code`),
`log_level`, and every `ServeConfig` field, written as Hydra overrides are (`max_wait_ms=2`,
`max_tokens_per_item=null`, `batching=false`); `python -m experiments.serve` takes the same keys
through Hydra (experiments/conf/serve.yaml). `api_key` defaults to `$NEXUS_SERVE_API_KEY`.

On SIGTERM uvicorn stops accepting connections, waits up to `graceful_timeout_s` for the
requests in flight (the batcher keeps scoring them), then the app stops and the process exits 0.
A checkpoint that fails to load stops the server with exit status 1.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import fields
from typing import Any, Sequence

from nexus.serve.config import ServeConfig

# Settings of the model the server loads, beside ServeConfig's, with their defaults.
LOAD_OPTIONS = {"device": "cpu", "dtype": None, "revision": None, "trust_remote_code": False}
KEYS = ("checkpoint", *LOAD_OPTIONS, "log_level", *(f.name for f in fields(ServeConfig)))


def value_of(text: str) -> Any:
    """An override's value as Hydra would read it: null, true/false, an int, a float, else text."""
    lowered = text.lower()
    if lowered in ("null", "none", "~"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """{key: value} from `key=value` arguments; ValueError naming an argument without '=' or an
    unknown key, and a missing checkpoint."""
    values: dict[str, Any] = {}
    for argument in argv:
        key, sep, text = argument.partition("=")
        if not sep:
            raise ValueError(f"argument {argument!r}: expected key=value")
        if key not in KEYS:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(KEYS)}")
        values[key] = value_of(text)
    if values.get("checkpoint") is None:
        raise ValueError("checkpoint=PATH_OR_HUB_ID is required")
    return values


def run_server(checkpoint: str, config: ServeConfig, *, log_level: str = "info", **load_options) -> int:
    """Serve `checkpoint` with uvicorn until SIGTERM or Ctrl-C; the exit status (1: it did not load)."""
    import uvicorn

    from nexus.serve.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    app = create_app(str(checkpoint), config, **load_options)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                           timeout_graceful_shutdown=config.graceful_timeout_s or None))
    app.state.server.on_failure = lambda: setattr(server, "should_exit", True)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler that
    # was there before it; this one makes that a clean exit (status 0), as process managers expect.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    return 1 if app.state.server.status == "failed" else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        values = parse_overrides(sys.argv[1:] if argv is None else argv)
        values.setdefault("api_key", os.environ.get("NEXUS_SERVE_API_KEY") or None)
        config = ServeConfig.from_mapping(values)
    except ValueError as err:
        print(f"nexus.serve: {err}", file=sys.stderr)
        return 2
    load_options = {key: values.get(key, default) for key, default in LOAD_OPTIONS.items()}
    return run_server(values["checkpoint"], config, log_level=str(values.get("log_level", "info")), **load_options)
