"""`python -m nexus.serve checkpoint=PATH_OR_HUB_ID [host=127.0.0.1 port=5000 ...]`: serve a
reward model with uvicorn until SIGTERM or Ctrl-C (settings: conf/serve.yaml, `ServeConfig`).

On SIGTERM uvicorn stops accepting connections, waits up to `graceful_timeout_s` for the
requests in flight (the batcher keeps scoring them), then the app stops and the process exits 0.
A checkpoint that fails to load stops the server with exit status 1.
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="conf", config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    import uvicorn

    from nexus.serve.app import create_app
    from nexus.serve.config import ServeConfig

    values = OmegaConf.to_container(cfg, resolve=True)
    config = ServeConfig.from_mapping(values)
    logging.basicConfig(level=str(cfg.log_level).upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(str(cfg.checkpoint), config, device=cfg.device, dtype=cfg.dtype, revision=cfg.revision,
                     trust_remote_code=cfg.trust_remote_code)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=str(cfg.log_level),
                                           timeout_graceful_shutdown=config.graceful_timeout_s or None))
    app.state.server.on_failure = lambda: setattr(server, "should_exit", True)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler that
    # was there before it; this one makes that a clean exit (status 0), as process managers expect.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if app.state.server.status == "failed":
        sys.exit(1)


if __name__ == "__main__":
    main()
