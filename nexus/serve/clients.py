"""The inputs and answers of the RL frameworks that call a reward server, as each sends them.

- OpenRLHF's remote RM posts `{"query", "prompts"?, "labels"?}` to /get_reward: each query is the
  policy's whole sequence decoded with its special tokens (`decode(prompt_ids + response_ids)`),
  so the prompt is already chat-templated and the response may end in eos or padding. Its own
  server reads only `query`; its client posts one sample per request and empty lists to every
  URL but the first.
- verl's reward loop posts vLLM's `/classify` body, `{"model", "input", "use_activation"}` (older
  verl: `"activation"`), where `input` is the conversation already rendered by the RM's chat
  template (its bos removed, as vLLM adds it back), and reads `data[-1]["probs"][-1]`.

Both send text that is already the model's: `rendered_inputs` turns it into the (prompt, response)
pairs a backbone reads as given (`RenderedText`), so that the reward is the one `rm.score` gives
the conversation.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from nexus.backbones.text import RenderedText
from nexus.serve.protocol import RequestError, check_strings, floats, json_type

def reads_rendered_text(rm) -> bool:
    """Whether `rm` scores through `Backbone.token_ids` on a decoder, so it can read a templated
    query as given (not the judge, which renders its own prompt, nor encoders)."""
    backbone = getattr(rm, "backbone", None)
    return (backbone is not None and getattr(rm, "reads_features", False) and not backbone.is_encoder
            and hasattr(backbone, "token_ids"))


def _strip_runs(text: str, tokens: list[str]) -> str:
    """`text` without leading and trailing runs of `tokens` (padding, eos), as OpenRLHF strips them."""
    tokens = [t for t in dict.fromkeys(tokens) if t]
    if not tokens:
        return text
    run = "(?:" + "|".join(map(re.escape, tokens)) + ")+"
    return re.sub(f"{run}$", "", re.sub(f"^{run}", "", text))


def rendered_query(backbone, query: str, close_turn: bool = True) -> tuple[str, str]:
    """One templated query as (`RenderedText` prompt, response) for `backbone`: padding and eos
    are stripped from both ends; where the chat template's assistant header occurs, the response
    is the text after its last occurrence, closed as the template closes an assistant turn (so the
    text is exactly the conversation's rendering); else the query is read as given (eos appended
    by `Backbone.token_ids`, as OpenRLHF's own server appends it). `close_turn=False` leaves the
    response open, for a process RM, whose steps are split from it and read before the turn ends."""
    tok = backbone.tokenizer
    text = _strip_runs(query, [tok.pad_token, tok.eos_token])
    turn = backbone.assistant_turn()
    if turn is None or turn[0] not in text:
        return RenderedText(text), ""
    header, close = turn
    cut = text.rindex(header) + len(header)
    response = text[cut:]
    closing = close.rstrip()
    if closing and response.endswith(closing):
        response = response[:-len(closing)]
    return RenderedText(text[:cut]), response + close if close_turn else response


def openrlhf_inputs(rm, queries: list[str], prompts: list[str] | None) -> tuple[list, list]:
    """(prompts, responses) to score for OpenRLHF's queries: read as rendered text where the model
    can (`reads_rendered_text`, a decoder with a chat template); else each query split after its
    prompt when `prompts` are given (422 naming the index if it does not start with it), or
    scored whole as the response to an empty prompt."""
    backbone = getattr(rm, "backbone", None)
    if reads_rendered_text(rm) and (prompts is None or getattr(backbone.tokenizer, "chat_template", None)):
        pairs = [rendered_query(backbone, q, close_turn=not rm.accepts_steps) for q in queries]
        return [p for p, _ in pairs], [r for _, r in pairs]
    if prompts is None:
        return [""] * len(queries), list(queries)
    responses = []
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        if not query.startswith(prompt):
            raise RequestError(422, f"query[{i}] does not start with prompts[{i}]: each query must be its "
                                    "prompt followed by the response")
        responses.append(query[len(prompt):])
    return list(prompts), responses


def restore_bos(backbone, text: str) -> str:
    """`text` with the bos its chat template renders put back where a client removed it. verl
    removes it because vLLM's tokenizer adds it back, but a tokenizer whose bos is a template token
    it does not add itself (SmolLM2's `<|im_start|>`) would then lose the text's first token: here
    it is restored where the template renders bos first and the text is a rendering (it holds the
    assistant header)."""
    tok = backbone.tokenizer
    bos, turn = tok.bos_token, backbone.assistant_turn()
    if not bos or text.startswith(bos) or turn is None or turn[0] not in text:
        return text
    if tok("x")["input_ids"][:1] == [tok.bos_token_id]:  # the tokenizer adds it, as vLLM's does
        return text
    opening = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    return bos + text if opening.startswith(bos) else text


def classify_inputs(rm, body: dict) -> tuple[list[str], bool]:
    """(texts, whether to apply the sigmoid) of a vLLM `/classify` body; 422 naming the field."""
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list):
        raise RequestError(422, f"field 'input' must be a string or an array of strings, got {json_type(texts)}")
    check_strings("input", texts)
    activation = body.get("use_activation", body.get("activation"))
    if activation is not None and not isinstance(activation, bool):
        raise RequestError(422, f"field 'use_activation' must be true, false or null, got {json_type(activation)}")
    if not reads_rendered_text(rm):
        raise RequestError(422, f"/classify reads text already rendered for the model; {type(rm).__name__} "
                                "does not score such text (use /score with prompts and responses)")
    texts = [restore_bos(rm.backbone, t) for t in texts]
    return texts, activation is not False  # vLLM's default (null) applies the activation


def classify_payload(rewards, model: str, activation: bool, tokens: int) -> dict[str, Any]:
    """vLLM's ClassificationResponse: one entry per input, `probs` the reward (its sigmoid with
    `use_activation`), `label` null (one class has no argmax to name)."""
    import torch

    values = torch.sigmoid(rewards.float()) if activation else rewards
    data = [{"index": i, "label": None, "probs": floats([v]), "num_classes": 1} for i, v in enumerate(values.tolist())]
    return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}


def models_payload(model: str, max_len: int | None) -> dict[str, Any]:
    """vLLM's (and the OpenAI API's) `GET /v1/models`: the one model this server scores."""
    card = {"id": model, "object": "model", "created": int(time.time()), "owned_by": "nexus", "root": model,
            "parent": None, "max_model_len": max_len, "permission": []}
    return {"object": "list", "data": [card]}
