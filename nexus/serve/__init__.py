"""Serve a nexus reward model over HTTP: `python -m nexus.serve checkpoint=PATH_OR_HUB_ID`.

`create_app` builds the FastAPI app (OpenRLHF's /get_reward, /score, /compare, /health, /info)
with dynamic batching (`nexus.serve.batcher`); `nexus.serve.ray_deployment` runs the same app as
Ray Serve replicas. Needs the `serve` extra: `pip install -e .[serve]`.
"""

from nexus.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(*args, **kwargs):
    """`nexus.serve.app.create_app` (imported on use, so `ServeConfig` needs no FastAPI)."""
    from nexus.serve.app import create_app as build

    return build(*args, **kwargs)
