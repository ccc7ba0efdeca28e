"""The reward server as a Ray Serve deployment: N replicas of the same FastAPI app behind Ray's
HTTP proxy, which spreads requests across them (each replica batches its own requests).

    import ray
    from ray import serve
    from nexus.serve import ServeConfig
    from nexus.serve.ray_deployment import deployment

    ray.init()
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(deployment("path/or/hub-id", ServeConfig(max_wait_ms=20), num_replicas=4,
                         ray_actor_options={"num_gpus": 1}, device="cuda"), route_prefix="/")
    # POST http://127.0.0.1:8000/get_reward, as with `python -m nexus.serve`

Each replica loads the checkpoint itself when it starts (`create_app`); its /health is 503 until
then. Needs the `ray` extra: `pip install -e .[ray]`.
"""

from __future__ import annotations

from typing import Any

from nexus.serve.config import ServeConfig


def deployment(checkpoint: str, config: ServeConfig | None = None, *, num_replicas: int = 1,
               ray_actor_options: dict[str, Any] | None = None, name: str = "nexus-reward-model",
               device: str = "cpu", dtype: str | None = None, revision: str | None = None,
               trust_remote_code: bool = False):
    """A bound Ray Serve application serving `checkpoint` with `num_replicas` replicas; pass it to
    `ray.serve.run`. `ray_actor_options` sets each replica's resources (default one CPU)."""
    from ray import serve

    config = config or ServeConfig()

    def build_app():  # runs in each replica
        from nexus.serve.app import create_app

        return create_app(checkpoint, config, device=device, dtype=dtype, revision=revision,
                          trust_remote_code=trust_remote_code)

    @serve.deployment(name=name, num_replicas=num_replicas, ray_actor_options=ray_actor_options or {"num_cpus": 1})
    @serve.ingress(build_app)
    class NexusRewardModel:
        """One replica: the app `build_app` returns, with its own model and batcher."""

    return NexusRewardModel.bind()
