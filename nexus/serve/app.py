"""The FastAPI application that serves one reward model.

Endpoints:
    POST /get_reward  OpenRLHF's remote reward model: {"query", "prompts"?, "labels"?} ->
                      {"rewards", "scores", "extra_logs"}; templated queries are read as rendered
                      text (`nexus.serve.clients`), empty lists get empty answers.
    POST /classify    vLLM's classification API as verl's reward loop calls it: {"model"?, "input",
                      "use_activation"?} -> {"data": [{"index", "probs": [reward], ...}], ...}.
    GET  /v1/models   the one model served, in vLLM's (OpenAI's) model list.
    POST /score       `rm.score` as JSON: {"prompts", "responses", "normalize"?, family keywords}.
    POST /compare     `rm.compare` as JSON: {"prompts", "responses_a", "responses_b", keywords}.
    GET  /health      200 {"status": "ready", ...} once the model is loaded and warmed up, else 503.
    GET  /info        the model (type, backbone, normaliser, temperature, dtype) and the limits.

The model is loaded and warmed up in a thread after the server starts listening, so /health
answers (503, "loading") while a large checkpoint loads. Scoring runs on the batcher's worker
thread (`nexus.serve.batcher`); request checks that tokenize run in the thread pool; the event
loop only parses JSON and routes results.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import torch

import nexus
from nexus.backbones.text import RenderedText
from nexus.base import RewardModel
from nexus.serve.batcher import Batcher, CallerGone, Job, QueueFull
from nexus.serve.clients import classify_inputs, classify_payload, models_payload, openrlhf_inputs
from nexus.serve.config import ServeConfig
from nexus.serve.protocol import (RequestError, check_count, check_same_length, check_sizes, check_strings,
                                  get_list, parse_body, reward_payload, score_payload)

log = logging.getLogger("nexus.serve")

# Status code HTTP gives a request whose client closed the connection first (nginx's convention;
# nobody reads it, the client is gone).
CLIENT_CLOSED = 499
# What warm-up scores once, so the first request does not pay for lazy initialisation.
WARMUP = (["Warm-up prompt: is this ready?"], ["Yes, this is a warm-up response."])


class Server:
    """One model behind the endpoints: loading, the batcher, request checks and the info."""

    def __init__(self, config: ServeConfig, load: Callable[[], RewardModel], source: str):
        self.config, self._load, self.source = config, load, source
        self.rm: RewardModel | None = None
        self.batcher: Batcher | None = None
        self.pass_tokens: int | None = None  # forward_max_tokens for the loaded model's device
        self.status, self.error = "loading", None
        self.on_failure: Callable[[], None] | None = None  # e.g. tell uvicorn to exit
        # Request checks tokenize; a few threads do it beside the model's, so that a burst of
        # requests neither blocks the event loop nor starts a thread (and a malloc arena) per request.
        self._checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nexus-check")

    async def start(self) -> None:
        """Load and warm up the model in a thread, then start batching."""
        try:
            self.rm = await asyncio.to_thread(self._load_and_warm_up)
        except Exception as err:
            self.status, self.error = "failed", f"{type(err).__name__}: {err}"
            log.error("nexus.serve: could not load %s: %s", self.source, self.error)
            if self.on_failure is not None:
                self.on_failure()
            return
        c = self.config
        self.pass_tokens = c.pass_tokens(self.device)
        self.batcher = Batcher(self._score, batching=c.batching, max_batch_tokens=c.max_batch_tokens,
                               max_wait_ms=c.max_wait_ms, max_queue_items=c.max_queue_items,
                               pass_tokens=self.pass_tokens, max_padding=c.max_padding)
        self.batcher.start()
        self.status = "ready"
        log.info("nexus.serve: %s ready (%s)", self.source, type(self.rm).__name__)

    def _load_and_warm_up(self) -> RewardModel:
        rm = self._load().eval()
        try:
            rm.score(*WARMUP)
        except (ValueError, TypeError) as err:  # a family that needs more than text to score
            log.warning("nexus.serve: warm-up skipped: %s", err)
        return rm

    async def stop(self) -> None:
        self._checks.shutdown(wait=False, cancel_futures=True)
        if self.batcher is not None:
            await self.batcher.close()
            log.info("nexus.serve: stopped; requests %s", self.batcher.stats())

    # -- what every scoring endpoint shares ------------------------------------------------

    def _score(self, prompts: list, responses: list, columns: dict, options: dict):
        return self.rm.score(prompts, responses, max_tokens=self.pass_tokens,
                             max_padding=self.config.max_padding, **columns, **options)

    @property
    def device(self) -> str:
        """Where the model's parameters are ("cpu" for a family without any)."""
        params = next(iter(self.rm.parameters()), None)
        return "cpu" if params is None else str(params.device)

    @property
    def item_limit(self) -> int | None:
        limits = [n for n in (self.config.max_tokens_per_item, self.rm.max_input_length) if n is not None]
        return min(limits) if limits else None

    def group(self, columns: dict, options: dict) -> str | None:
        """Jobs with the same columns and options may share a call, if the model's rewards do not
        depend on the rest of the call."""
        if not self.config.batching or not self.rm.scores_independently:
            return None
        return json.dumps([sorted(columns), options], sort_keys=True, default=repr)

    async def checked(self, prompts: list, responses: list, names: list[str], keywords: dict) -> tuple[dict, dict, list]:
        """(columns, options, sizes) after every check `score` makes and the size limit. A request
        that cannot fit the queue is refused first (503), before the work of checking it."""
        self.make_room(len(prompts))
        self.batcher.arriving += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._checks, self._check, prompts, responses, names, keywords)
        finally:
            self.batcher.arriving -= 1

    def make_room(self, items: int) -> None:
        try:
            self.batcher.check_room(items)
        except QueueFull as err:
            raise RequestError(503, f"server busy: {err}; retry later",
                               {"Retry-After": str(self.config.retry_after_s)}) from None

    def _check(self, prompts: list, responses: list, names: list[str], keywords: dict) -> tuple[dict, dict, list]:
        """`checked` on a check thread (it tokenizes: the model's tokenizer is only read, never
        reconfigured, by nexus, so this may run beside the model's thread)."""
        try:
            columns, options = self.rm.check_call(prompts, responses, **keywords)
        except (ValueError, TypeError) as err:
            raise RequestError(422, str(err)) from None
        sizes = self.rm.input_lengths(prompts, responses)
        check_sizes(names, sizes, self.item_limit, self.rm.length_unit)
        return {k: list(v) for k, v in columns.items() if v is not None}, options, sizes

    async def run(self, request: Request, job: Job) -> Any:
        """Queue `job` and wait for it; 503 when the queue is full, 499 if the client leaves first."""
        self.make_room(job.items)
        self.batcher.submit(job)
        gone = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            return await self.batcher.result(job, gone)
        except CallerGone:
            raise RequestError(CLIENT_CLOSED, "client closed the connection") from None
        except (ValueError, TypeError) as err:
            raise RequestError(422, str(err)) from None
        finally:
            gone.cancel()

    # -- endpoints -------------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        """401 unless the request carries the API key (when one is set), compared in constant time."""
        key = self.config.api_key
        if key is None:
            return
        given = request.headers.get("x-api-key")
        bearer = request.headers.get("authorization", "")
        if given is None and bearer[:7].lower() == "bearer ":
            given = bearer[7:]
        if given is None or not hmac.compare_digest(given.encode(), key.encode()):
            raise RequestError(401, "missing or wrong API key (send 'Authorization: Bearer <key>' or "
                                    "'X-API-Key: <key>')", {"WWW-Authenticate": "Bearer"})

    async def admitted(self, request: Request) -> dict:
        """The request's JSON body once it is authorised, the model is ready and the body fits."""
        self.authorize(request)
        if self.status != "ready":
            raise RequestError(503, f"model is {self.status}", {"Retry-After": str(self.config.retry_after_s)})
        return parse_body(await read_body(request, self.config.max_body_bytes))

    async def scored(self, request: Request, prompts: list, responses: list, names: list[str], keywords: dict,
                     finish: Callable, **fixed_options) -> Any:
        """Check the inputs, queue them as one job that may share a `score` call, and return what
        `finish` makes of the job's output."""
        columns, options, sizes = await self.checked(prompts, responses, names, keywords)
        options = {**options, **fixed_options}
        job = Job(prompts, responses, sizes, columns, options, group=self.group(columns, options), finish=finish)
        return await self.run(request, job)

    async def get_reward(self, request: Request):
        """OpenRLHF's remote reward model: each query is the policy's whole decoded sequence (its
        prompt already templated); `prompts` and `labels` are optional, as OpenRLHF's own server
        reads only `query`, and an empty `query` (sent to every URL but the first) gets empty lists."""
        body = await self.admitted(request)
        queries = get_list(body, "query")
        prompts = get_list(body, "prompts", required=False)
        labels = get_list(body, "labels", required=False)
        if not queries:
            return {"rewards": [], "scores": [], "extra_logs": {}}
        check_count("query", len(queries), self.config.max_items_per_request)
        check_strings("query", queries)
        if prompts is not None:
            check_same_length("prompts", prompts, "query", len(queries))
            check_strings("prompts", prompts)
        keywords = {}
        if labels is not None:
            check_same_length("labels", labels, "query", len(queries))
            if "references" in self.rm.input_columns:  # a rules RM checks answers against its labels
                keywords["references"] = labels
        names = [f"query[{i}]" for i in range(len(queries))]
        inputs, responses = openrlhf_inputs(self.rm, queries, prompts)
        return await self.scored(request, inputs, responses, names, keywords, reward_payload)

    async def classify(self, request: Request):
        """vLLM's `/classify`, as verl's reward loop calls a discriminative RM: each input is the
        conversation already rendered by the chat template; `probs` is [reward] (normalised where
        the model has a normaliser, as /get_reward's `rewards`; its sigmoid with `use_activation`:
        verl sends false and reads `data[-1]["probs"][-1]`)."""
        body = await self.admitted(request)
        texts, activation = classify_inputs(self.rm, body)
        check_count("input", len(texts), self.config.max_items_per_request)
        names = [f"input[{i}]" for i in range(len(texts))]
        prompts = [RenderedText(t) for t in texts]
        model = body.get("model") if isinstance(body.get("model"), str) else self.source

        def finish(out):
            return classify_payload(out.rewards, model, activation, sum(self.rm.input_lengths(prompts, [""] * len(prompts))))

        return await self.scored(request, prompts, [""] * len(texts), names, {}, finish)

    async def models(self, request: Request):
        self.authorize(request)
        return models_payload(self.source, None if self.rm is None else self.rm.max_input_length)

    async def score(self, request: Request):
        """`rm.score` as JSON; fields other than prompts, responses and normalize are its keywords."""
        body = await self.admitted(request)
        prompts, responses = get_list(body, "prompts"), get_list(body, "responses")
        check_count("prompts", len(prompts), self.config.max_items_per_request)
        check_same_length("responses", responses, "prompts", len(prompts))
        normalize = body.get("normalize", True)
        if not isinstance(normalize, bool):
            raise RequestError(422, f"field 'normalize' must be true or false, got {normalize!r}")
        names = [f"prompts[{i}]/responses[{i}]" for i in range(len(prompts))]
        keywords = {k: v for k, v in body.items() if k not in ("prompts", "responses", "normalize")}
        return await self.scored(request, prompts, responses, names, keywords, score_payload, normalize=normalize)

    async def compare(self, request: Request):
        """`rm.compare` as JSON: P(responses_a preferred to responses_b) per prompt."""
        body = await self.admitted(request)
        prompts = get_list(body, "prompts")
        a, b = get_list(body, "responses_a"), get_list(body, "responses_b")
        check_count("prompts", len(prompts), self.config.max_items_per_request)
        check_same_length("responses_a", a, "prompts", len(prompts))
        check_same_length("responses_b", b, "prompts", len(prompts))
        keywords = {k: v for k, v in body.items() if k not in ("prompts", "responses_a", "responses_b")}
        n, rm = len(prompts), self.rm
        names = [f"prompts[{i}]/responses_{side}[{i}]" for side in "ab" for i in range(n)]
        doubled = {k: [*v, *v] if k in rm.input_columns and isinstance(v, list) else v for k, v in keywords.items()}
        if type(rm).compare is RewardModel.compare:  # both sides in a shared score call, raw rewards, as it does
            return await self.scored(request, [*prompts, *prompts], [*a, *b], names, doubled, normalize=False,
                                     finish=lambda out: {"probabilities": rm.preference_probability(
                                         out.select(slice(0, n)), out.select(slice(n, 2 * n))).tolist()})
        # a family with its own comparison (the judge asks in both orders): its `compare`, alone
        sizes = (await self.checked([*prompts, *prompts], [*a, *b], names, doubled))[2]
        job = Job([*prompts, *prompts], [*a, *b], sizes,
                  call=lambda: {"probabilities": rm.compare(prompts, a, b, **keywords).tolist()})
        return await self.run(request, job)

    async def health(self):
        """200 with the batcher's counters once ready; 503 while loading or after a failed load."""
        stats = self.batcher.stats() if self.batcher is not None else {}
        body = {"status": self.status, **({"error": self.error} if self.error else {}), **stats}
        return JSONResponse(body, status_code=200 if self.status == "ready" else 503)

    async def describe(self, request: Request):
        self.authorize(request)
        return self.info()

    def info(self) -> dict[str, Any]:
        rm = self.rm
        params = next(iter(rm.parameters()), None) if rm is not None else None
        backbone = getattr(rm, "backbone", None) or getattr(getattr(rm, "model", None), "backbone", None)
        return {
            "status": self.status,
            "checkpoint": self.source,
            "nexus_version": nexus.__version__,
            "model_type": None if rm is None else rm.model_type,
            "model_class": None if rm is None else type(rm).__name__,
            "backbone": None if backbone is None else backbone.source,
            "normalizer": None if rm is None or rm.normalizer is None else rm.normalizer.to_config(),
            "temperature": None if rm is None else float(rm.temperature),
            "dtype": None if params is None else str(params.dtype).removeprefix("torch."),
            "device": None if params is None else str(params.device),
            "torch_threads": torch.get_num_threads(),
            "input_columns": None if rm is None else list(rm.input_columns),
            "call_options": None if rm is None else list(rm.call_options),
            "accepts_steps": None if rm is None else rm.accepts_steps,
            "scores_independently": None if rm is None else rm.scores_independently,
            "limits": {**self.config.public(), "forward_max_tokens": self.pass_tokens,
                       "max_input_length": None if rm is None else rm.max_input_length,
                       "item_limit": None if rm is None else self.item_limit,
                       "length_unit": None if rm is None else rm.length_unit},
        }


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so the next ASGI message is
    the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"body is {declared} bytes; the limit is {limit} (max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body exceeds the limit of {limit} bytes (max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(checkpoint: str | None = None, config: ServeConfig | None = None, *, model: RewardModel | None = None,
               device: str = "cpu", dtype: str | None = None, revision: str | None = None,
               trust_remote_code: bool = False) -> FastAPI:
    """The app serving `model`, or the checkpoint `nexus.load` finds at `checkpoint` (a local
    directory or a hub id), loaded when the app starts."""
    config = config or ServeConfig()
    if (model is None) == (checkpoint is None):
        raise ValueError("give a checkpoint or a model, not both")
    if model is not None:
        load, source = (lambda: model), type(model).__name__
    else:
        load = lambda: nexus.load(checkpoint, device, revision=revision, dtype=dtype,  # noqa: E731
                                  trust_remote_code=trust_remote_code)
        source = str(checkpoint)
    server = Server(config, load, source)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(server.start())
        yield
        if not loading.done():
            loading.cancel()
        await server.stop()

    app = FastAPI(title="nexus reward model", version=nexus.__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.server = server
    app.add_exception_handler(RequestError, refused)
    app.add_exception_handler(Exception, failed)
    app.add_api_route("/get_reward", server.get_reward, methods=["POST"])
    app.add_api_route("/score", server.score, methods=["POST"])
    app.add_api_route("/compare", server.compare, methods=["POST"])
    app.add_api_route("/classify", server.classify, methods=["POST"])
    app.add_api_route("/v1/models", server.models, methods=["GET"])
    app.add_api_route("/health", server.health, methods=["GET"])
    app.add_api_route("/info", server.describe, methods=["GET"])
    return app


async def refused(request: Request, err: RequestError) -> JSONResponse:
    return JSONResponse({"detail": err.message}, status_code=err.status, headers=err.headers)


async def failed(request: Request, err: Exception) -> JSONResponse:
    """An unexpected error answers 500; the server keeps serving."""
    log.exception("nexus.serve: %s %s failed", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {type(err).__name__}: {err}"}, status_code=500)
