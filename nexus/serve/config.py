"""The server's settings: where it listens, how it batches, and the limits it enforces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from nexus.validation import check_positive_int


# forward_max_tokens="auto": on a CPU, passes of 1024 padded tokens scored a scalar MiniLM RM in-process
# about 1.15x as fast as `score`'s default batches of 32 rows (benchmarks/serve_load.py's in-process
# references); an accelerator wants larger passes.
CPU_PASS_TOKENS = 1024
ACCELERATOR_PASS_TOKENS = 4096


@dataclass(frozen=True)
class ServeConfig:
    """Settings of `nexus.serve` (every field is also a Hydra override: `max_wait_ms=2`).

    Attributes:
        host, port: where uvicorn listens; 127.0.0.1 unless told otherwise.
        batching: coalesce requests that arrive together into one `score` call; False scores each
            request alone (the baseline `benchmarks/serve_load.py` compares against).
        max_batch_tokens: most tokens (characters for a family without a tokenizer) per coalesced
            call; a request larger than this is scored alone, never split.
        max_wait_ms: how long the oldest queued request waits for others to join its call, from
            its arrival or from the last call's answers if later (only while others are on their
            way in or callers are concurrent; a lone client never waits). The wait ends early once
            as many requests are queued as the last call held plus those that came during it.
        forward_max_tokens, max_padding: how a coalesced call is cut into forward passes
            (`score`'s `max_tokens` and `max_padding`): rows x longest row <= forward_max_tokens,
            and at most that fraction of a pass padding, since requests of mixed lengths would
            otherwise pad most rows to the longest. The requests of a pass are answered as soon
            as it ends. "auto": 1024 tokens on a CPU (smaller passes ran `score` faster in-process
            there) and 4096 on an accelerator. None: the model's own batching, one answer
            time for the whole call.
        max_queue_items: most inputs waiting to be scored; a request that would exceed it gets 503
            with Retry-After instead of growing memory without bound.
        max_body_bytes: largest request body (413 beyond it).
        max_items_per_request: most inputs per request (422 beyond it).
        max_tokens_per_item: most tokens per input (422 naming the index beyond it); None: the
            model's own limit (`RewardModel.max_input_length`), which is also a cap on this.
        api_key: when set, every endpoint but /health needs `Authorization: Bearer <key>` or
            `X-API-Key: <key>` (401 otherwise).
        graceful_timeout_s: on SIGTERM, how long in-flight requests may take to finish.
        retry_after_s: the Retry-After a 503 carries.
        threads: torch's intra-op threads in the server process (`torch.set_num_threads`, set
            by `python -m nexus.serve` before the model loads); None: torch's default, one per
            core. On a CPU host the HTTP side needs CPU too, so fewer model threads than cores can
            serve more requests per second (docs/serving.md measures it).
    """

    host: str = "127.0.0.1"
    port: int = 5000
    batching: bool = True
    max_batch_tokens: int = 16384
    max_wait_ms: float = 20.0
    forward_max_tokens: int | str | None = "auto"
    max_padding: float | None = 0.25
    max_queue_items: int = 4096
    max_body_bytes: int = 8 * 1024 * 1024
    max_items_per_request: int = 1024
    max_tokens_per_item: int | None = None
    api_key: str | None = None
    graceful_timeout_s: float = 60.0
    retry_after_s: int = 1
    threads: int | None = None

    def __post_init__(self):
        for name in ("max_batch_tokens", "max_queue_items", "max_body_bytes", "max_items_per_request"):
            check_positive_int(f"serve.{name}", getattr(self, name))
        check_positive_int("serve.max_tokens_per_item", self.max_tokens_per_item, allow_none=True)
        if self.forward_max_tokens != "auto":
            check_positive_int("serve.forward_max_tokens", self.forward_max_tokens, allow_none=True)
        if self.max_padding is not None and (isinstance(self.max_padding, bool) or not isinstance(
                self.max_padding, (int, float)) or not 0.0 <= self.max_padding < 1.0):
            raise ValueError(f"serve.max_padding must be a fraction in [0, 1) or null, got {self.max_padding!r}")
        check_positive_int("serve.port", self.port, minimum=0, maximum=65535)
        check_positive_int("serve.retry_after_s", self.retry_after_s)
        check_positive_int("serve.threads", self.threads, allow_none=True)
        if not isinstance(self.batching, bool):
            raise ValueError(f"serve.batching must be true or false, got {self.batching!r}")
        for name in ("max_wait_ms", "graceful_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"serve.{name} must be a number >= 0, got {value!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("serve.api_key must be a non-empty string (or null for no key)")

    def pass_tokens(self, device: str) -> int | None:
        """`forward_max_tokens` for a model on `device` ("cpu", "cuda:0", ...), "auto" resolved."""
        if self.forward_max_tokens != "auto":
            return self.forward_max_tokens
        return CPU_PASS_TOKENS if str(device).startswith("cpu") else ACCELERATOR_PASS_TOKENS

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ServeConfig":
        """The settings among `values` (other keys, such as the checkpoint's, are left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def public(self) -> dict[str, Any]:
        """The settings a client may see (/info): everything but the key."""
        out = asdict(self)
        out["api_key"] = self.api_key is not None
        return out
