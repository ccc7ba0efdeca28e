"""The reward server over real HTTP on loopback: uvicorn serving `create_app` in a thread (or
`python -m nexus.serve` in a subprocess), called with httpx and requests as RL trainers call it."""

from __future__ import annotations

import asyncio
import ast
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from nexus.backbones import load_backbone  # noqa: E402
from nexus.models.ensemble import EnsembleRewardModel  # noqa: E402
from nexus.models.rules import RulesRewardModel  # noqa: E402
from nexus.models.scalar import ScalarRewardModel  # noqa: E402
from nexus.normalize import BatchStandardize  # noqa: E402
from nexus.serve import ServeConfig, create_app  # noqa: E402

PROMPTS = ["1 + 2", "3 + 4 - 5", "", "a prompt with unicode: é ✓", "9 - 1"]
RESPONSES = [" = 3", " = 2\nso the answer is 2", "hé", " ok", " = 8" * 20]


def scalar_rm(seed: int = 0) -> ScalarRewardModel:
    torch.manual_seed(seed)
    return ScalarRewardModel(load_backbone("tiny-gpt2"), head_hidden=16, dropout=0.0).eval()


@contextmanager
def serving(app, timeout: float = 60.0):
    """uvicorn serving `app` on a free loopback port in a thread; yields (base url, the app's Server)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    while httpx.get(f"{url}/health").status_code != 200:
        assert time.monotonic() < deadline, "the model never became ready"
        time.sleep(0.05)
    try:
        yield url, app.state.server
    finally:
        server.should_exit = True
        thread.join(timeout)


@contextmanager
def worker_paused(server):
    """Hold the model's worker thread, so requests queue behind it (released on exit)."""
    gate = threading.Event()
    server.batcher._executor.submit(gate.wait)
    try:
        yield gate
    finally:
        gate.set()


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def openrlhf_body(prompts, responses, labels=None):
    body = {"query": [p + r for p, r in zip(prompts, responses)], "prompts": list(prompts)}
    if labels is not None:
        body["labels"] = labels
    return body


def test_openrlhf_client_gets_exactly_its_response_shape_and_the_rewards_of_score():
    requests = pytest.importorskip("requests")
    rm = scalar_rm()
    expected = rm.score(PROMPTS, RESPONSES).rewards
    with serving(create_app(model=rm)) as (url, _):
        # What OpenRLHF's remote reward function sends: requests.post(url, json=..., headers=...).
        data = openrlhf_body(PROMPTS, RESPONSES, labels=["3", "2", "", "", "8"])
        response = requests.post(f"{url}/get_reward", json=data, headers={"Content-Type": "application/json"},
                                 timeout=60)
        assert response.status_code == 200
        payload = response.json()
    assert set(payload) == {"rewards", "scores", "extra_logs"}
    assert torch.allclose(torch.tensor(payload["rewards"]), expected, atol=1e-5)
    assert payload["scores"] == payload["rewards"]  # no normaliser: the raw rewards are the rewards
    assert payload["extra_logs"] == {}


def test_concurrent_requests_are_coalesced_and_each_gets_its_own_rewards_in_order():
    rm = scalar_rm()
    requests_ = []
    for i in range(48):  # requests of 1 to 4 inputs, prompts shared across requests
        n = 1 + i % 4
        prompts = [PROMPTS[(i + j) % len(PROMPTS)] for j in range(n)]
        responses = [f" = {i * 7 + j}" + " and more" * (j + i % 3) for j in range(n)]
        requests_.append((prompts, responses))
    expected = [rm.score(p, r).rewards for p, r in requests_]

    async def fire(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/get_reward", json=openrlhf_body(p, r)) for p, r in requests_))

    with serving(create_app(model=rm, config=ServeConfig(max_wait_ms=20))) as (url, server):
        responses = asyncio.run(fire(url))
        stats = server.batcher.stats()
    for response, want in zip(responses, expected):
        assert response.status_code == 200
        assert torch.allclose(torch.tensor(response.json()["rewards"]), want, atol=1e-5)
    assert stats["completed"] >= 48 and stats["batches"] < stats["accepted"]  # requests shared calls


def test_clients_that_return_after_each_answer_are_gathered_into_one_call_not_two_half_batches():
    """Sixteen clients, each sending its next request 2 ms after its last answer, half of them
    starting while the first call runs. Waiting only from each job's arrival, the late half would
    form the second call and the two halves would alternate (two calls per round); the batcher waits
    for the last call's callers, so every call after the first holds all sixteen but the last
    (the late half's final round)."""
    from nexus.outputs import RewardOutput
    from nexus.serve.batcher import Batcher, Job

    calls = []

    def score(prompts, responses, columns, options):  # a model call that takes 30 ms, like a forward
        time.sleep(0.03)
        calls.append(len(prompts))
        return RewardOutput(rewards=torch.tensor([float(len(r)) for r in responses]))

    async def main():
        batcher = Batcher(score, max_wait_ms=20)
        batcher.start()

        async def client(name: int, rounds: int):
            if name >= 8:
                await asyncio.sleep(0.01)  # the late half arrives during the first call
            for i in range(rounds):
                response = "x" * (name + 16 * i)
                job = batcher.submit(Job(["p"], [response], [1], group="score"))
                assert (await batcher.result(job)).rewards.tolist() == [float(len(response))]
                await asyncio.sleep(0.002)

        await asyncio.gather(*(client(name, 8) for name in range(16)))
        await batcher.close()

    asyncio.run(main())
    assert sum(calls) == 16 * 8
    assert calls[1:-1] == [16] * 7, calls  # two half batches per round would be 16 calls of 8


def test_a_coalesced_call_answers_each_forward_pass_as_it_ends():
    """Two short requests and two long ones in one call, cut into passes of at most 100 padded
    tokens: the short pair first, then each long one alone. The short pair's callers get their
    answers while the long passes still run (the long passes wait for them, for up to 10 s), so
    they can send their next requests meanwhile."""
    from nexus.outputs import RewardOutput
    from nexus.serve.batcher import Batcher, Job

    calls, short_answered, seen_during_long = [], threading.Event(), []

    def score(prompts, responses, columns, options):
        calls.append(list(responses))
        if len(responses[0]) > 50:  # a long pass: were the short requests answered before it ends?
            seen_during_long.append(short_answered.wait(10))
        return RewardOutput(rewards=torch.tensor([float(len(r)) for r in responses]))

    async def main():
        batcher = Batcher(score, pass_tokens=100)
        batcher.start()
        texts = ["s" * 10, "L" * 90, "t" * 10, "M" * 90]
        jobs = [batcher.submit(Job(["p"], [text], [len(text)], group="score")) for text in texts]

        async def short_pair():
            for job in (jobs[0], jobs[2]):
                assert (await batcher.result(job)).rewards.tolist() == [10.0]
            short_answered.set()

        results = await asyncio.gather(short_pair(), *(batcher.result(job) for job in (jobs[1], jobs[3])))
        await batcher.close()
        return [out.rewards.tolist() for out in results[1:]]

    assert asyncio.run(main()) == [[90.0], [90.0]]
    assert calls == [["s" * 10, "t" * 10], ["M" * 90], ["L" * 90]]  # shortest pass first, arrival order inside
    assert seen_during_long == [True, True]


def test_score_and_compare_endpoints_mirror_the_python_interface_with_conversations():
    rm = scalar_rm()
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}]
    prompts, responses = [*PROMPTS, conversation], [*RESPONSES, [{"role": "assistant", "content": "4"}]]
    b = [r + " (other)" if isinstance(r, str) else [{"role": "assistant", "content": "5"}] for r in responses]
    with serving(create_app(model=rm)) as (url, _):
        scored = httpx.post(f"{url}/score", json={"prompts": prompts, "responses": responses}).json()
        compared = httpx.post(f"{url}/compare", json={"prompts": prompts, "responses_a": responses,
                                                      "responses_b": b}).json()
    assert torch.allclose(torch.tensor(scored["rewards"]), rm.score(prompts, responses).rewards, atol=1e-5)
    assert scored["uncertainty"] is None and scored["step_rewards"] is None
    assert torch.allclose(torch.tensor(compared["probabilities"]), rm.compare(prompts, responses, b), atol=1e-5)


def test_a_judge_compares_in_its_own_way_over_http():
    """The generative judge overrides `compare` (it asks in both orders); /compare calls it as is."""
    from nexus.models.generative import GenerativeRewardModel

    backbone = load_backbone("tiny-gpt2", lm_logprobs=True)
    rm = GenerativeRewardModel(backbone)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in rm.parameters():
            if p.ndim > 1:
                p.normal_(0.0, 0.3)
    rm.eval()
    prompts, a, b = ["1 + 2", "3 + 4"], [" = 3", " = 7"], [" = 4", " = 8"]
    with serving(create_app(model=rm)) as (url, _):
        compared = httpx.post(f"{url}/compare", json={"prompts": prompts, "responses_a": a, "responses_b": b},
                              timeout=60).json()
        scored = httpx.post(f"{url}/score", json={"prompts": prompts, "responses": a}, timeout=60).json()
    assert torch.allclose(torch.tensor(compared["probabilities"]), rm.compare(prompts, a, b), atol=1e-5)
    assert torch.allclose(torch.tensor(scored["rewards"]), rm.score(prompts, a).rewards, atol=1e-5)


def test_extra_logs_carry_an_ensembles_uncertainty_and_member_means():
    torch.manual_seed(0)
    rm = EnsembleRewardModel(load_backbone("tiny-gpt2"), n_members=3, head_hidden=16).eval()
    out = rm.score(PROMPTS, RESPONSES)
    with serving(create_app(model=rm)) as (url, _):
        logs = httpx.post(f"{url}/get_reward", json=openrlhf_body(PROMPTS, RESPONSES)).json()["extra_logs"]
    assert torch.allclose(torch.tensor(logs["uncertainty"]), out.uncertainty, atol=1e-5)
    for j in range(3):
        assert torch.allclose(torch.tensor(logs[f"member_means/{j}"]), out.extras["member_means"][:, j], atol=1e-5)
    assert all(len(values) == len(PROMPTS) for values in logs.values())  # one number per query


def test_labels_reach_a_rules_model_as_references():
    rm = RulesRewardModel(["math_correct"])
    prompts, responses, labels = ["1 + 2", "2 + 2"], [" = 3", " = 5"], ["3", "4"]
    with serving(create_app(model=rm)) as (url, _):
        payload = httpx.post(f"{url}/get_reward", json=openrlhf_body(prompts, responses, labels)).json()
    expected = rm.score(prompts, responses, references=labels).rewards
    assert payload["rewards"] == expected.tolist() and payload["rewards"][0] > payload["rewards"][1]


def test_a_per_call_normaliser_is_never_shared_between_requests():
    """Under BatchStandardize a reward depends on the rest of its call, so each request is its own call."""
    rm = scalar_rm().set_normalizer(BatchStandardize())
    assert not rm.scores_independently
    groups = [(PROMPTS[:3], RESPONSES[:3]), (PROMPTS[2:], RESPONSES[2:])]

    async def fire(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/get_reward", json=openrlhf_body(p, r)) for p, r in groups))

    with serving(create_app(model=rm, config=ServeConfig(max_wait_ms=50))) as (url, server):
        first, second = asyncio.run(fire(url))
        assert server.batcher.stats()["batches"] == server.batcher.stats()["accepted"]
    for response, (p, r) in zip((first, second), groups):
        payload = response.json()
        assert torch.allclose(torch.tensor(payload["rewards"]), rm.score(p, r).rewards, atol=1e-5)
        assert abs(sum(payload["rewards"])) < 1e-4  # standardised within the request
        assert torch.allclose(torch.tensor(payload["scores"]), rm.score(p, r, normalize=False).rewards, atol=1e-5)


@pytest.mark.parametrize("body, field", [
    (b"{not json", "line 1 column 2"),
    (b"[1, 2]", "JSON object"),
    (b'{"prompts": ["a"]}', "'query' is required"),
    (b'{"query": "a b", "prompts": ["a"]}', "'query' must be an array, got a string"),
    (b'{"query": ["a b", 7], "prompts": ["a", "b"]}', "query[1] must be a string, got a number"),
    (b'{"query": ["a b"], "prompts": ["a", "b"]}', "'prompts' has 2 items but 'query' has 1"),
    (b'{"query": ["a b", "c d"], "prompts": ["a", "x"]}', "query[1] does not start with prompts[1]"),
    (b'{"query": ["a\\ud800"], "prompts": ["a"]}', "lone surrogate"),
])
def test_bad_get_reward_bodies_get_422_naming_the_field(body, field):
    with serving(create_app(model=scalar_rm())) as (url, server):
        response = httpx.post(f"{url}/get_reward", content=body)
        assert response.status_code == 422 and field in response.json()["detail"]
        assert httpx.get(f"{url}/health").status_code == 200  # still serving


def test_openrlhf_bodies_as_sent_today_only_query_and_empty_lists():
    """OpenRLHF's serve_rm reads only `query`, and its client sends empty lists to every URL but the
    first: both are answered (200) with the rewards of score, or empty lists."""
    rm = scalar_rm()
    with serving(create_app(model=rm)) as (url, _):
        empty = httpx.post(f"{url}/get_reward", json={"query": [], "prompts": [], "labels": []})
        assert empty.status_code == 200 and empty.json() == {"rewards": [], "scores": [], "extra_logs": {}}
        alone = httpx.post(f"{url}/get_reward", json={"query": [PROMPTS[0] + RESPONSES[0]]}).json()["rewards"]
    # tiny-gpt2 has no chat template: a query without its prompt is read whole, as text given
    from nexus.backbones.text import RenderedText

    torch.testing.assert_close(torch.tensor(alone), rm.score([RenderedText(PROMPTS[0] + RESPONSES[0])], [""]).rewards,
                               atol=1e-5, rtol=0)


def test_classify_and_models_answer_as_vllm_does_and_refuse_what_they_cannot_read():
    rm = scalar_rm()
    with serving(create_app(model=rm)) as (url, _):
        models = httpx.get(f"{url}/v1/models").json()
        assert models["object"] == "list" and models["data"][0]["object"] == "model"
        body = httpx.post(f"{url}/classify", json={"model": "m", "input": ["1 + 2 = 3", "9"], "use_activation": False}).json()
        assert [d["index"] for d in body["data"]] == [0, 1] and body["model"] == "m" and body["object"] == "list"
        raw = torch.tensor([d["probs"][0] for d in body["data"]])
        sig = httpx.post(f"{url}/classify", json={"input": "9"}).json()["data"][0]["probs"][0]  # vLLM's default: the activation
        assert abs(sig - float(torch.sigmoid(raw[1]))) < 1e-5
        bad = httpx.post(f"{url}/classify", json={"input": 7})
        assert bad.status_code == 422 and "'input'" in bad.json()["detail"]
        bad = httpx.post(f"{url}/classify", json={"input": ["a"], "use_activation": "no"})
        assert bad.status_code == 422 and "use_activation" in bad.json()["detail"]
    from nexus.backbones.text import RenderedText

    torch.testing.assert_close(raw, rm.score([RenderedText("1 + 2 = 3"), RenderedText("9")], ["", ""]).rewards,
                               atol=1e-5, rtol=0)
    rules = RulesRewardModel(functions=["repetition"], weights=[1.0])
    with serving(create_app(model=rules)) as (url, _):
        refused = httpx.post(f"{url}/classify", json={"input": ["a"]})
        assert refused.status_code == 422 and "RulesRewardModel" in refused.json()["detail"]


def test_remote_reward_func_is_an_async_trl_reward_function_with_the_rewards_of_score():
    import inspect

    import nexus

    rm = scalar_rm()
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    completions = [[{"role": "assistant", "content": r}] for r in RESPONSES[:3]]
    with serving(create_app(model=rm)) as (url, _):
        func = nexus.remote_reward_func(url, name="remote_rm")
        assert inspect.iscoroutinefunction(func) and func.__name__ == "remote_rm"
        # TRL's exact call: keywords only, with completion_ids, trainer_state and the dataset columns
        strings = asyncio.run(func(prompts=PROMPTS, completions=RESPONSES, completion_ids=[[1]] * len(PROMPTS),
                                   trainer_state=None, answer=["x"] * len(PROMPTS)))
        chats = asyncio.run(func(prompts=conversations, completions=completions, completion_ids=[[1]] * 3))
        with pytest.raises(ValueError, match="answered 422"):
            asyncio.run(func(prompts=["a"], completions=["b", "c"]))
    assert torch.allclose(torch.tensor(strings), rm.score(PROMPTS, RESPONSES).rewards, atol=1e-5)
    assert torch.allclose(torch.tensor(chats), rm.score(conversations, completions).rewards, atol=1e-5)


def test_limits_return_413_and_422_naming_index_and_limit():
    rm = scalar_rm()
    config = ServeConfig(max_body_bytes=4000, max_items_per_request=4, max_tokens_per_item=64)
    with serving(create_app(model=rm, config=config)) as (url, _):
        big = httpx.post(f"{url}/score", json={"prompts": ["p"], "responses": ["x" * 5000]})
        assert big.status_code == 413 and "4000" in big.json()["detail"]

        def chunks():  # no Content-Length: refused while streaming
            for _ in range(10):
                yield b" " * 1000
        streamed = httpx.post(f"{url}/score", content=chunks())
        assert streamed.status_code == 413

        many = httpx.post(f"{url}/score", json={"prompts": ["p"] * 5, "responses": ["r"] * 5})
        assert many.status_code == 422 and "5 items; the limit is 4" in many.json()["detail"]

        long = httpx.post(f"{url}/get_reward", json=openrlhf_body(["p", "p"], [" short", " long" * 40]))
        detail = long.json()["detail"]
        assert long.status_code == 422 and "query[1]" in detail and "limit is 64 tokens" in detail

        unknown = httpx.post(f"{url}/score", json={"prompts": ["p"], "responses": ["r"], "temperature": 2})
        assert unknown.status_code == 422 and "temperature" in unknown.json()["detail"]


def test_api_key_is_required_except_for_health():
    with serving(create_app(model=scalar_rm(), config=ServeConfig(api_key="s3cret"))) as (url, _):
        body = openrlhf_body(["1 + 2"], [" = 3"])
        assert httpx.post(f"{url}/get_reward", json=body).status_code == 401
        assert httpx.post(f"{url}/get_reward", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}/info").status_code == 401
        assert httpx.post(f"{url}/get_reward", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.post(f"{url}/get_reward", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200
        info = httpx.get(f"{url}/info", headers={"X-API-Key": "s3cret"}).json()
    assert info["limits"]["api_key"] is True and "s3cret" not in str(info)
    assert info["model_type"] == "scalar" and info["backbone"] == "tiny-gpt2" and info["dtype"] == "float32"


def test_a_full_queue_answers_503_with_retry_after_and_health_stays_responsive():
    config = ServeConfig(max_queue_items=4, retry_after_s=3)
    body = openrlhf_body(["1 + 2", "3 + 4"], [" = 3", " = 7"])

    async def scenario(url, server, gate):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            first = asyncio.ensure_future(client.post("/get_reward", json=body))
            await asyncio.to_thread(wait_until, lambda: server.batcher.running_items == 2)
            queued = [asyncio.ensure_future(client.post("/get_reward", json=body)) for _ in range(2)]
            await asyncio.to_thread(wait_until, lambda: server.batcher.queued_items == 4)
            refused = await client.post("/get_reward", json=body)
            started = time.monotonic()
            health = await client.get("/health")
            health_seconds = time.monotonic() - started
            gate.set()  # let the model run: the held requests finish
            return await first, await asyncio.gather(*queued), refused, health, health_seconds

    with serving(create_app(model=scalar_rm(), config=config)) as (url, server):
        with worker_paused(server) as gate:
            first, queued, refused, health, health_seconds = asyncio.run(scenario(url, server, gate))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
    assert "4 inputs are queued" in refused.json()["detail"]
    assert health.status_code == 200 and health.json()["queued_items"] == 4 and health_seconds < 1.0
    assert first.status_code == 200 and all(q.status_code == 200 for q in queued)


def test_a_client_that_disconnects_leaves_no_queued_work():
    with serving(create_app(model=scalar_rm())) as (url, server):
        with worker_paused(server):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/get_reward", json=openrlhf_body(["1 + 2"], [" = 3"]), timeout=0.5)
            wait_until(lambda: server.batcher.stats()["cancelled"] == 1)
            stats = server.batcher.stats()
        assert stats["queued_items"] == 0 and stats["queued_jobs"] == 0
        response = httpx.post(f"{url}/get_reward", json=openrlhf_body(["1 + 2"], [" = 3"]))
        assert response.status_code == 200
        assert server.batcher.stats()["completed"] == stats["completed"] + 1


class RefusesBoom(ScalarRewardModel):
    """A scalar RM that cannot score the response "boom" (a stand-in for any input a model fails on)."""

    def _score_inputs(self, prompts, responses, columns, **kwargs):
        if "boom" in responses:
            raise ValueError(f"responses[{list(responses).index('boom')}] is 'boom': cannot score it")
        return super()._score_inputs(prompts, responses, columns, **kwargs)


def test_a_request_the_model_fails_on_fails_alone():
    torch.manual_seed(0)
    rm = RefusesBoom(load_backbone("tiny-gpt2"), head_hidden=16, dropout=0.0).eval()
    groups = [(["1 + 2"], [" = 3"]), (["1 + 2"], ["boom"]), (["2 + 2"], [" = 4"])]

    async def fire(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/get_reward", json=openrlhf_body(p, r)) for p, r in groups))

    with serving(create_app(model=rm, config=ServeConfig(max_wait_ms=100))) as (url, server):
        good, bad, other = asyncio.run(fire(url))
        assert httpx.get(f"{url}/health").status_code == 200
    assert bad.status_code == 422 and "'boom'" in bad.json()["detail"]
    for response, (p, r) in ((good, groups[0]), (other, groups[2])):
        assert response.status_code == 200
        assert torch.allclose(torch.tensor(response.json()["rewards"]), rm.score(p, r).rewards, atol=1e-5)


def test_memory_stays_flat_over_1000_sequential_requests():
    """Resident memory after 1,000 more requests is within 32 MiB of what it was after a warm-up of
    200 (a leak of one response per request, about 1 KiB each plus the inputs, would not be)."""
    psutil = pytest.importorskip("psutil")
    process = psutil.Process()
    body = openrlhf_body(["What is 12 + 30?"] * 4, [" = 42", " = 41", " It is 42.", " I think 43"])
    with serving(create_app(model=scalar_rm())) as (url, server):
        with httpx.Client(base_url=url) as client:
            for _ in range(200):
                assert client.post("/get_reward", json=body).status_code == 200
            before = process.memory_info().rss
            for _ in range(1000):
                assert client.post("/get_reward", json=body).status_code == 200
            after = process.memory_info().rss
        assert server.batcher.stats()["completed"] == 1200
    assert after - before < 32 * 2**20, f"resident memory grew by {(after - before) / 2**20:.1f} MiB"


def test_serve_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="max_queue_items"):
        ServeConfig(max_queue_items=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        ServeConfig(max_wait_ms=-1)
    with pytest.raises(ValueError, match="api_key"):
        ServeConfig(api_key="")
    with pytest.raises(ValueError, match="threads"):
        ServeConfig(threads=0)
    with pytest.raises(ValueError, match="forward_max_tokens"):
        ServeConfig(forward_max_tokens="large")


def test_forward_passes_default_to_a_size_for_the_device():
    assert ServeConfig().pass_tokens("cpu") == 1024
    assert ServeConfig().pass_tokens("cuda:0") == 4096
    assert ServeConfig(forward_max_tokens=512).pass_tokens("cuda:0") == 512
    assert ServeConfig(forward_max_tokens=None).pass_tokens("cpu") is None


def test_the_command_line_and_the_hydra_config_take_the_same_settings():
    from omegaconf import OmegaConf

    from nexus.serve.cli import KEYS, parse_overrides

    conf = OmegaConf.load(Path(__file__).resolve().parents[1] / "experiments" / "conf" / "serve.yaml")
    assert set(conf) - {"hydra"} == set(KEYS)
    values = parse_overrides(["checkpoint=rm", "max_wait_ms=2.5", "batching=false", "max_tokens_per_item=null",
                              "port=5001"])
    assert values == {"checkpoint": "rm", "max_wait_ms": 2.5, "batching": False, "max_tokens_per_item": None,
                      "port": 5001}
    with pytest.raises(ValueError, match="unknown setting 'max_wait'"):
        parse_overrides(["checkpoint=rm", "max_wait=2"])
    with pytest.raises(ValueError, match="checkpoint"):
        parse_overrides(["port=5001"])


# -- the command line, in a subprocess ---------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_cli(checkpoint, *args, module: str = "nexus.serve") -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", module, f"checkpoint={checkpoint}", f"port={port}", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}"


def test_sigterm_under_load_finishes_every_accepted_request_and_exits_0(tmp_path):
    rm = scalar_rm()
    checkpoint = rm.save_pretrained(tmp_path / "ckpt")
    process, url = start_cli(checkpoint, "max_wait_ms=2", "max_batch_tokens=4096", "threads=1")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
        assert httpx.get(f"{url}/info").json()["torch_threads"] == 1  # `threads=` reached torch
        groups = [([f"{i} + {j} = ?" for j in range(16)], [f" {i + j}" + " because" * 30 for j in range(16)])
                  for i in range(64)]

        async def load():
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                async def one(p, r):
                    try:
                        return await client.post("/get_reward", json=openrlhf_body(p, r))
                    except httpx.TransportError as err:  # refused or closed before it was read
                        return err
                tasks = [asyncio.ensure_future(one(p, r)) for p, r in groups]
                while not any(t.done() for t in tasks):  # SIGTERM once the first answers arrive
                    await asyncio.sleep(0.005)
                process.send_signal(signal.SIGTERM)
                done = sum(t.done() for t in tasks)
                return await asyncio.gather(*tasks), done

        results, done_at_signal = asyncio.run(load())
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    stats = ast.literal_eval(re.search(r"stopped; requests (\{.*\})", output).group(1))
    answered = [(r, g) for r, g in zip(results, groups) if isinstance(r, httpx.Response)]
    assert all(r.status_code == 200 for r, _ in answered), [r.status_code for r, _ in answered]
    assert stats["accepted"] == stats["completed"] == len(answered)  # every accepted request answered
    assert len(answered) > done_at_signal  # requests in flight at SIGTERM were finished, not dropped
    print(f"answered {len(answered)} of {len(groups)}; {done_at_signal} before SIGTERM")
    for response, (p, r) in answered[:8]:
        assert torch.allclose(torch.tensor(response.json()["rewards"]), rm.score(p, r).rewards, atol=1e-5)


def test_a_checkpoint_that_does_not_load_stops_the_server_with_status_1(tmp_path):
    """Through the Hydra entry point, which runs the same server as `python -m nexus.serve`."""
    process, _ = start_cli(tmp_path / "missing", f"hydra.run.dir={tmp_path}/run", module="experiments.serve")
    assert process.wait(timeout=120) == 1
    assert "could not load" in process.stdout.read()


@pytest.mark.slow
def test_ray_serve_deployment_serves_the_same_rewards(tmp_path):
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    from nexus.serve.ray_deployment import deployment

    rm = scalar_rm()
    checkpoint = rm.save_pretrained(tmp_path / "ckpt")
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(str(checkpoint), num_replicas=1), route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, timeout=120)
        payload = httpx.post(f"{url}/get_reward", json=openrlhf_body(PROMPTS, RESPONSES), timeout=60).json()
        info = httpx.get(f"{url}/info").json()
    finally:
        serve.shutdown()
        ray.shutdown()
    assert torch.allclose(torch.tensor(payload["rewards"]), rm.score(PROMPTS, RESPONSES).rewards, atol=1e-5)
    assert info["model_type"] == "scalar" and info["checkpoint"] == str(checkpoint)
