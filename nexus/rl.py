"""Any nexus reward model as an RL reward function.

TRL's `GRPOTrainer` calls each reward function as
`reward_func(prompts=..., completions=..., completion_ids=..., trainer_state=..., **columns)`, where
`columns` are the other columns of the training dataset, and expects one float per completion.
`prompts` and `completions` are strings (standard datasets) or lists of chat messages
`{"role", "content"}` (conversational datasets); both are accepted here, and conversations reach
`rm.score` as they are, so a backbone renders them with its chat template once, every role kept
(`nexus.conversation`). TRL names the logged reward after the function's `__name__`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from nexus.conversation import check_conversation, content_text

if TYPE_CHECKING:
    from nexus.base import RewardModel


def join_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """The default rendering of a conversation: message contents joined by newlines, roles dropped.

    A single-message prompt or completion is thus exactly its content, which is what an RM
    trained on plain (prompt, response) text expects.
    """
    return "\n".join(content_text(m["content"], "message") for m in messages)


def as_input(item: Any, field: str, index: int, render: Callable[[Sequence[Mapping]], str] | None):
    """A prompt or completion for `score`: a string as it is; chat messages as they are (checked),
    or rendered to text by `render` where one is given."""
    if isinstance(item, str):
        return item
    if not (isinstance(item, Sequence) and all(isinstance(m, Mapping) and "content" in m for m in item)):
        raise ValueError(f"{field}[{index}] is {type(item).__name__}: expected a string or a list of "
                         "{'role', 'content'} messages")
    if render is None:
        return check_conversation(item, f"{field}[{index}]")
    try:
        text = render(item)
    except ValueError as err:
        raise ValueError(f"{field}[{index}]: {err}") from err
    if not isinstance(text, str):
        raise ValueError(f"{field}[{index}]: rendering the messages gave {type(text).__name__}, not str")
    return text


def reward_func(rm: "RewardModel", columns: Mapping[str, str] | None = None, *, name: str | None = None,
                normalize: bool = True, render_messages: Callable[[Sequence[Mapping]], str] | None = None):
    """A function `(prompts, completions, **kwargs) -> list[float]` that scores with `rm`.

    Args:
        rm: any nexus reward model.
        columns: `score` keyword -> dataset column passed by the trainer, e.g.
            `{"references": "answer"}`; other keyword arguments (TRL's `completion_ids`,
            `trainer_state`, unmapped columns) are ignored.
        name: the function's `__name__` (TRL logs `rewards/<name>`); default `nexus_<model_type>`.
        normalize: apply the RM's normaliser, if it has one.
        render_messages: turns a conversational prompt or completion into text before scoring
            (e.g. `join_messages`); default None: the messages go to `score` as they are.
    """
    columns = dict(columns or {})
    render = render_messages

    def func(prompts: Sequence, completions: Sequence, **kwargs: Any) -> list[float]:
        extra = {}
        for keyword, column in columns.items():
            if column not in kwargs:
                raise ValueError(f"reward function {func.__name__}: dataset column {column!r} (for "
                                 f"score's {keyword}=) was not passed; got {sorted(kwargs)}")
            extra[keyword] = kwargs[column]
        texts_p = [as_input(p, "prompts", i, render) for i, p in enumerate(prompts)]
        texts_c = [as_input(c, "completions", i, render) for i, c in enumerate(completions)]
        out = rm.score(texts_p, texts_c, normalize=normalize, **extra)
        return [float(r) for r in out.rewards.tolist()]

    func.__name__ = func.__qualname__ = name or f"nexus_{rm.model_type}"
    return func


def _jsonable(item: Any) -> Any:
    """A checked prompt or completion as JSON can carry it (messages as a list of dicts)."""
    return item if isinstance(item, str) else [dict(m) for m in item]


def remote_reward_func(url: str, *, api_key: str | None = None, name: str = "nexus_remote",
                       normalize: bool = True, columns: Mapping[str, str] | None = None, timeout_s: float = 300.0):
    """An async TRL reward function that scores on a remote nexus server (`python -m nexus.serve`).

    TRL (0.27 and later) awaits coroutine reward functions concurrently, calling them exactly as
    the others: `await func(prompts=..., completions=..., completion_ids=..., trainer_state=...,
    **columns)`. Prompts and completions (strings or chat messages, as TRL passes them) are posted
    to the server's `/score` unchanged, so the server's backbone renders conversations with its
    chat template, as `rm.score` does in-process. The HTTP call runs in a worker thread (only the
    standard library: no client package is needed), so the trainer's event loop is never blocked.

    Args:
        url: the server's base URL, e.g. "http://rm-host:5000".
        api_key: sent as `Authorization: Bearer <key>` where the server requires one.
        name: the function's `__name__` (TRL logs `rewards/<name>`).
        normalize: apply the served model's normaliser, if it has one.
        columns: `score` keyword -> dataset column, as for `reward_func`.
        timeout_s: per request.
    """
    import asyncio
    import json
    import urllib.error
    import urllib.request

    endpoint, columns = url.rstrip("/") + "/score", dict(columns or {})
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}

    def post(body: dict) -> list[float]:
        request = urllib.request.Request(endpoint, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise ValueError(f"reward server {endpoint} answered {err.code}: {detail}") from None
        return [float("nan") if r is None else float(r) for r in payload["rewards"]]

    async def func(prompts: Sequence, completions: Sequence, **kwargs: Any) -> list[float]:
        body = {"prompts": [_jsonable(as_input(p, "prompts", i, None)) for i, p in enumerate(prompts)],
                "responses": [_jsonable(as_input(c, "completions", i, None)) for i, c in enumerate(completions)],
                "normalize": normalize}
        for keyword, column in columns.items():
            if column not in kwargs:
                raise ValueError(f"reward function {name}: dataset column {column!r} (for score's "
                                 f"{keyword}=) was not passed; got {sorted(kwargs)}")
            body[keyword] = list(kwargs[column])
        return await asyncio.to_thread(post, body)

    func.__name__ = func.__qualname__ = name
    return func
