"""Conformance with the ecosystem's text conventions, against references nexus did not compute.

Every reference below is a short function written from its owner's convention, never from nexus:

- the model card usage of a chat RM: `model(tokenizer.apply_chat_template(conversation,
  tokenize=True)).logits[0][0]` (Skywork-Reward, the transformers docs), and for an encoder
  `model(**tokenizer(prompt, response)).logits[0][0]`;
- TRL's RewardTrainer on standard data: `tokenizer(prompt + chosen + eos)` (eos added only if the
  text does not end with it), default special tokens;
- TRL's GRPO/RLOO with a reward model path: `apply_chat_template(prompt + completion,
  tokenize=False)` (standard data: `prompt + completion`), tokenized right-padded with
  `add_special_tokens=False`, `logits[:, 0]`;
- RewardBench's `run_rm.py`: `apply_chat_template([user, assistant], tokenize=False)`, tokenized
  with default special tokens, padded, the first of two leading bos masked, `logits[:, 0]`;
- OpenRLHF's agent and remote RM client: `query = decode(prompt_ids + action_ids,
  skip_special_tokens=False)` (the prompt templated with a generation prompt, the action ending
  in the policy's stop token), one sample per request `{"query", "prompts", "labels"}`, and empty
  lists to every URL but the first;
- verl's reward loop: `apply_chat_template(conversation, tokenize=False)` with its bos removed,
  posted to vLLM's `/classify` as `{"model", "input", "use_activation": False}`, read at
  `data[-1]["probs"][-1]`.

One tokenizer per layout, built here or taken from the packaged SmolLM2 and MiniLM models:
ChatML with pad != eos (Qwen2.5/3), ChatML with pad == eos (SmolLM2), a Llama-3 header template,
a Gemma turn template, no template (GPT-2: bos = eos = pad), BERT with token types, and an
encoder without them. `python -m tests.test_conventions` prints the table of max |diff|.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, LlamaConfig

import nexus
from nexus.backbones import load_backbone, resolve_backbone_dir
from nexus.models.scalar import ScalarRewardModel

TOLERANCE = 1e-4
LAYOUTS = ("chatml_pad_ne_eos", "chatml_pad_eq_eos", "llama3_headers", "gemma_turns", "gpt2_no_template",
           "bert_token_types", "encoder_no_types")
ENCODERS = ("bert_token_types", "encoder_no_types")
PATHS = ("import", "export", "served /score", "TRL GRPO", "RewardBench", "OpenRLHF", "verl /classify")

PROMPTS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a prime number."}],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"},
     {"role": "user", "content": "Again, louder."}],
    [{"role": "user", "content": "Is an empty answer scored?"}],
]
RESPONSES = ["2 + 3 = 5.", "7", "HI AGAIN!", ""]
STRING_PROMPTS = ["What is 2 + 3?", "Name a prime number.", "Say hi, then again.", "Empty?"]

LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                   "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
                   "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>"
                  "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n"
                  "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


# -- the layouts -------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _smollm2_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_backbone_dir("smollm2-135m"), local_files_only=True)


def _with_specials(tok, specials: list[str], bos: str, eos: str, pad: str, template: str | None):
    """A copy of `tok` with added special tokens, its bos/eos/pad, a post-processor that adds bos (as
    Llama's and Gemma's tokenizers do) and `template` as its chat template."""
    from tokenizers import processors

    tok = copy.deepcopy(tok)
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.bos_token, tok.eos_token, tok.pad_token = bos, eos, pad
    bos_id = tok.convert_tokens_to_ids(bos)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    tok.chat_template = template
    return tok


def layout_tokenizer(name: str):
    smol = _smollm2_tokenizer()
    if name == "chatml_pad_ne_eos":  # the Qwen2.5/Qwen3 layout: eos <|im_end|>, pad <|endoftext|>
        tok = copy.deepcopy(smol)
        tok.pad_token = "<|endoftext|>"
        return tok
    if name == "chatml_pad_eq_eos":  # SmolLM2 as shipped
        return copy.deepcopy(smol)
    if name == "llama3_headers":
        return _with_specials(smol, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                     "<|finetune_right_pad_id|>"],
                              "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", LLAMA3_TEMPLATE)
    if name == "gemma_turns":
        return _with_specials(smol, ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"],
                              "<bos>", "<eos>", "<pad>", GEMMA_TEMPLATE)
    if name == "gpt2_no_template":  # GPT-2's layout: <|endoftext|> is bos, eos and pad; no chat template
        tok = copy.deepcopy(smol)
        tok.chat_template = None
        tok.bos_token = tok.eos_token = tok.pad_token = "<|endoftext|>"
        return tok
    minilm = AutoTokenizer.from_pretrained(resolve_backbone_dir("minilm"), local_files_only=True)
    if name == "encoder_no_types":  # a pair encoding without token types (RoBERTa-like inputs)
        minilm.model_input_names = minilm.init_kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    return minilm


def random_classifier(tok, encoder: bool, types: int = 2, seed: int = 0):
    """A tiny random sequence classifier on `tok`'s vocabulary, with weights large enough that
    different texts get clearly different logits."""
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=512, pad_token_id=tok.pad_token_id, num_labels=1)
    config = (BertConfig(type_vocab_size=types, **common) if encoder
              else LlamaConfig(num_key_value_heads=2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                               **common))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
        for p in model.parameters():
            p.data.normal_(0.0, 0.3)
    return model.eval()


def native_rm(body, tok, directory: Path, encoder: bool, raw: bool, seed: int = 1) -> ScalarRewardModel:
    """A nexus scalar RM built as a user builds one (`load_backbone` on a local directory), with a
    random linear head: what training would export."""
    body.save_pretrained(directory)
    tok.save_pretrained(directory)
    backbone = load_backbone(str(directory), pooling="pooler" if encoder else None,
                             prompt_format="raw" if raw else "chat")
    torch.manual_seed(seed)
    rm = ScalarRewardModel(backbone, head_hidden=0, dropout=0.0).eval()
    with torch.no_grad():
        rm.head.net.weight.normal_(0.0, 1.0)
        if encoder:
            rm.head.net.bias.fill_(0.3)  # BERT's classifier has a bias: exported exactly
    return rm


# -- the references, each written from its owner's convention -----------------------------------

def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)


def _conversation(prompt, response) -> list[dict]:
    head = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return [*head, {"role": "assistant", "content": response}]


@torch.no_grad()
def model_card_rewards(model, tok, prompts, responses, encoder: bool) -> torch.Tensor:
    """Chat RMs: `apply_chat_template(conversation, tokenize=True)`, one unpadded input at a time;
    encoders: `model(**tokenizer(prompt, response))`."""
    out = []
    for p, r in zip(prompts, responses):
        if encoder:
            inputs = tok(p, r, return_tensors="pt")
        else:
            inputs = {"input_ids": torch.tensor([_ids(tok.apply_chat_template(_conversation(p, r), tokenize=True))])}
        out.append(model(**inputs).logits[0][0])
    return torch.stack(out)


@torch.no_grad()
def trl_reward_trainer_rewards(model, tok, prompts, responses) -> torch.Tensor:
    """TRL RewardTrainer's standard data: `prompt + chosen`, eos appended if missing, default
    special tokens; the classifier reads it unpadded."""
    out = []
    for p, r in zip(prompts, responses):
        text = p + r
        if not text.endswith(tok.eos_token):
            text += tok.eos_token
        out.append(model(input_ids=torch.tensor([tok(text)["input_ids"]])).logits[0][0])
    return torch.stack(out)


@torch.no_grad()
def trl_grpo_rewards(model, tok, prompts, completions) -> torch.Tensor:
    """TRL GRPOTrainer/RLOOTrainer `_calculate_rewards` with a model-path reward function."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if isinstance(prompts[0], list):
        texts = [tok.apply_chat_template(p + c, tokenize=False) for p, c in zip(prompts, completions)]
    else:
        texts = [p + c for p, c in zip(prompts, completions)]
    inputs = tok(text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    return model(**inputs).logits[:, 0]


@torch.no_grad()
def rewardbench_rewards(model, tok, prompts, responses) -> torch.Tensor:
    """RewardBench `run_rm.py` with a chat template: the [user, assistant] dialogue rendered with
    `tokenize=False`, then its pipeline's tokenizer call; a doubled leading bos is masked."""
    texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                     tokenize=False) for p, r in zip(prompts, responses)]
    inputs = tok(texts, truncation=True, max_length=2048, padding=True, return_tensors="pt")
    if tok.bos_token_id is not None:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        for row in range(ids.shape[0]):
            real = mask[row].nonzero().flatten()
            if len(real) > 1 and ids[row, real[0]] == ids[row, real[1]] == tok.bos_token_id:
                mask[row, real[0]] = 0
    return model(**inputs).logits[:, 0]


def openrlhf_query(tok, prompt, response, stop_token: str) -> tuple[str, str]:
    """(query, prompt text) as OpenRLHF's single-turn agent builds them: the prompt templated with a
    generation prompt and tokenized without special tokens, the action ending in the stop token,
    both decoded with their special tokens."""
    if isinstance(prompt, list):
        prompt_text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    else:
        prompt_text = prompt
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    action_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids(stop_token)]
    return tok.decode(prompt_ids + action_ids, skip_special_tokens=False), prompt_text


def openrlhf_rewards(url, tok, prompts, responses, stop_token: str) -> torch.Tensor:
    """OpenRLHF's remote RM client: one sample per request; with two URLs the second gets empty lists."""
    import httpx

    out = []
    for p, r in zip(prompts, responses):
        query, prompt_text = openrlhf_query(tok, p, r, stop_token)
        answer = httpx.post(f"{url}/get_reward", json={"query": [query], "prompts": [prompt_text], "labels": [""]},
                            headers={"Content-Type": "application/json"}, timeout=60)
        assert answer.status_code == 200, answer.text
        payload = answer.json()
        out.append(payload["rewards"][0])
        empty = httpx.post(f"{url}/get_reward", json={"query": [], "prompts": [], "labels": []}, timeout=60)
        assert empty.status_code == 200 and empty.json()["rewards"] == []
        only_query = httpx.post(f"{url}/get_reward", json={"query": [query]}, timeout=60)  # OpenRLHF's serve_rm reads only this
        assert only_query.status_code == 200 and math.isclose(only_query.json()["rewards"][0], out[-1], abs_tol=1e-6)
    return torch.tensor(out)


def verl_rewards(url, tok, prompts, responses, flag: str = "use_activation") -> torch.Tensor:
    """verl's reward loop calling a discriminative RM through vLLM's /classify."""
    import httpx

    out = []
    for p, r in zip(prompts, responses):
        text = tok.apply_chat_template(_conversation(p, r), add_generation_prompt=False, tokenize=False)
        if tok.bos_token and text.startswith(tok.bos_token):
            text = text[len(tok.bos_token):]
        answer = httpx.post(f"{url}/classify", json={"model": "rm", "input": text, flag: False}, timeout=60)
        assert answer.status_code == 200, answer.text
        out.append(answer.json()["data"][-1]["probs"][-1])
    return torch.tensor(out)


# -- the table ----------------------------------------------------------------------------------

def _diff(a, b) -> float:
    return float((torch.as_tensor(a, dtype=torch.float32) - torch.as_tensor(b, dtype=torch.float32)).abs().max())


def stop_token(tok) -> str:
    """The token a policy stops at: the one that closes an assistant turn in the template (else eos)."""
    if not tok.chat_template:
        return tok.eos_token
    text = tok.apply_chat_template(_conversation("x", "\u2063"), tokenize=False)
    closing = _ids(tok(text.split("\u2063")[-1], add_special_tokens=False))
    return tok.convert_ids_to_tokens(closing[0])


def conformance(name: str, tmp: Path) -> dict[str, float | str]:
    """Max |diff| of nexus against each reference for one layout; a string says why a path does not apply."""
    from tests.test_serve import serving
    from nexus.serve import create_app

    encoder, tok = name in ENCODERS, layout_tokenizer(name)
    chat = bool(getattr(tok, "chat_template", None))
    prompts = PROMPTS if chat else STRING_PROMPTS
    model = random_classifier(tok, encoder, types=1 if name == "encoder_no_types" else 2)
    model.save_pretrained(tmp / "hf")
    tok.save_pretrained(tmp / "hf")
    row: dict[str, float | str] = {}
    if encoder:
        string_prompts = STRING_PROMPTS
        row["import"] = _diff(nexus.load(tmp / "hf").score(string_prompts, RESPONSES).rewards,
                              model_card_rewards(model, tok, string_prompts, RESPONSES, encoder=True))
    elif chat:
        imported = nexus.load(tmp / "hf")
        truth = model_card_rewards(model, tok, prompts, RESPONSES, encoder=False)
        strings = model_card_rewards(model, tok, STRING_PROMPTS, RESPONSES, encoder=False)
        row["import"] = max(_diff(imported.score(prompts, RESPONSES).rewards, truth),
                            _diff(imported.score(STRING_PROMPTS, RESPONSES).rewards, strings))
    else:  # trained by TRL on standard data: nexus reads the text as given
        row["import"] = _diff(nexus.load(tmp / "hf", prompt_format="raw").score(prompts, RESPONSES).rewards,
                              trl_reward_trainer_rewards(model, tok, prompts, RESPONSES))
    rm = native_rm(model.base_model, tok, tmp / "body", encoder, raw=not chat and not encoder)
    ours = rm.score(STRING_PROMPTS if encoder else prompts, RESPONSES).rewards
    rm.export_hf(tmp / "export")
    exported = AutoModelForSequenceClassification.from_pretrained(tmp / "export").eval()
    etok = AutoTokenizer.from_pretrained(tmp / "export")
    if encoder:
        reference = model_card_rewards(exported, etok, STRING_PROMPTS, RESPONSES, encoder=True)
    elif chat:
        reference = model_card_rewards(exported, etok, prompts, RESPONSES, encoder=False)
    else:
        reference = trl_reward_trainer_rewards(exported, etok, prompts, RESPONSES)
    row["export"] = _diff(ours, reference)
    import httpx

    with serving(create_app(model=rm)) as (url, _):
        served = httpx.post(f"{url}/score", json={"prompts": STRING_PROMPTS if encoder else prompts,
                                                  "responses": RESPONSES}, timeout=60).json()["rewards"]
        row["served /score"] = _diff(served, reference)
        if encoder:
            for path in ("TRL GRPO", "RewardBench", "OpenRLHF", "verl /classify"):
                row[path] = "n/a: decoder RMs only (one rendered text, no pair encoding)"
            return row
        completions = ([[{"role": "assistant", "content": r}] for r in RESPONSES] if chat else RESPONSES)
        row["TRL GRPO"] = _diff(trl_grpo_rewards(exported, etok, prompts, completions), ours)
        if chat:
            string_ours = rm.score(STRING_PROMPTS, RESPONSES).rewards
            row["RewardBench"] = _diff(rewardbench_rewards(exported, etok, STRING_PROMPTS, RESPONSES), string_ours)
        else:
            row["RewardBench"] = "n/a: without a chat template RewardBench renders a fastchat template"
        row["OpenRLHF"] = _diff(openrlhf_rewards(url, etok, prompts, RESPONSES, stop_token(etok)), ours)
        if chat:
            row["verl /classify"] = max(_diff(verl_rewards(url, etok, prompts, RESPONSES), ours),
                                        _diff(verl_rewards(url, etok, prompts, RESPONSES, "activation"), ours))
        else:
            row["verl /classify"] = "n/a: verl renders the RM's chat template"
    return row


@pytest.mark.parametrize("layout", LAYOUTS)
def test_nexus_scores_as_each_convention_builds_the_text(tmp_path, layout):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    row = conformance(layout, tmp_path)
    assert set(row) == set(PATHS)
    numbers = {path: value for path, value in row.items() if not isinstance(value, str)}
    assert all(value <= TOLERANCE for value in numbers.values()), numbers


def test_the_references_tell_the_conventions_apart():
    """The references are sharp: the double eos nexus used to append, a missing token type, or the
    chat template around an already-templated query each move the reward far past the tolerance."""
    tok = layout_tokenizer("chatml_pad_ne_eos")
    model = random_classifier(tok, encoder=False)
    ids = _ids(tok.apply_chat_template(_conversation(PROMPTS[0], RESPONSES[0]), tokenize=True))
    with torch.no_grad():
        right = model(input_ids=torch.tensor([ids])).logits[0][0]
        doubled = model(input_ids=torch.tensor([ids + [tok.eos_token_id]])).logits[0][0]
    assert abs(float(right - doubled)) > 100 * TOLERANCE
    bert_tok = layout_tokenizer("bert_token_types")
    bert = random_classifier(bert_tok, encoder=True)
    with torch.no_grad():
        typed = bert(**bert_tok("a prompt", "a response", return_tensors="pt")).logits[0][0]
        untyped = bert(**bert_tok("a prompt", "a response", return_tensors="pt", return_token_type_ids=False)).logits[0][0]
    assert abs(float(typed - untyped)) > 10 * TOLERANCE


def test_text_rule_ids_match_the_tokenizer_exactly():
    """The ids themselves, not only the rewards: a chat decoder reads apply_chat_template's ids,
    an encoder the pair encoding (its token types rebuilt from the ids)."""
    for name in ("chatml_pad_ne_eos", "llama3_headers", "gemma_turns"):
        tok = layout_tokenizer(name)
        backbone = nexus.backbones.Backbone(random_classifier(tok, encoder=False).base_model, tok, source=name)
        for p, r in zip(PROMPTS, RESPONSES):
            assert backbone.token_ids([p], [r])[0] == _ids(tok.apply_chat_template(_conversation(p, r), tokenize=True))
    tok = layout_tokenizer("bert_token_types")
    backbone = nexus.backbones.Backbone(random_classifier(tok, encoder=True).base_model, tok, source="bert")
    batch = backbone.collate(backbone.token_ids(STRING_PROMPTS, RESPONSES))
    # the model card's call, one pair at a time (a batched call encodes ("p", "") as a pair, alone as "p")
    expected = tok.pad([tok(p, r) for p, r in zip(STRING_PROMPTS, RESPONSES)], return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(backbone.token_type_ids(batch["input_ids"], batch["attention_mask"]), expected["token_type_ids"])


def test_score_candidates_takes_a_conversation_prompt_and_packs_it_as_score_reads_it(tmp_path):
    tok = layout_tokenizer("chatml_pad_ne_eos")
    model = random_classifier(tok, encoder=False)
    rm = native_rm(model.base_model, tok, tmp_path / "body", encoder=False, raw=False)
    candidates = ["5", "2 + 3 = 5.", "six", ""]
    shared = rm.score_candidates(PROMPTS[1], candidates).rewards
    truth = model_card_rewards(*_export(rm, tmp_path / "export"), [PROMPTS[1]] * 4, candidates, encoder=False)
    assert _diff(shared, truth) <= TOLERANCE and len(set(shared.round(decimals=4).tolist())) == 4
    with pytest.raises(ValueError, match="prompt is int"):
        rm.score_candidates(3, candidates)


def test_a_process_rm_served_to_openrlhf_gets_the_step_rewards_of_the_conversation(tmp_path):
    """Its steps are split from the templated query's response and read before the turn closes."""
    from tests.test_serve import serving
    from nexus.models.process import ProcessRewardModel
    from nexus.serve import create_app

    tok = layout_tokenizer("chatml_pad_ne_eos")
    body = random_classifier(tok, encoder=False).base_model
    body.save_pretrained(tmp_path / "body")
    tok.save_pretrained(tmp_path / "body")
    torch.manual_seed(0)
    prm = ProcessRewardModel(load_backbone(str(tmp_path / "body")), head_hidden=0, dropout=0.0).eval()
    responses = ["2 + 3 = 5\nso 5.", "7", "HI\nAGAIN!", ""]
    truth = prm.score(PROMPTS, responses).rewards
    with serving(create_app(model=prm)) as (url, _):
        served = openrlhf_rewards(url, tok, PROMPTS, responses, stop_token(tok))
    assert _diff(served, truth) <= TOLERANCE


def rewardbench_pairs(n: int = 36) -> list[dict]:
    """n RewardBench-layout rows (prompt, chosen, rejected, subset): right vs off-by-one sums, some
    chosen responses longer than their rejected ones and some shorter, over four subsets."""
    subsets = ["alpacaeval-easy", "mt-bench-hard", "refusals-dangerous", "math-prm"]
    rows = []
    for i in range(n):
        a, b = 3 + 7 * i % 41, 5 + 11 * i % 37
        good, bad = f"{a} + {b} = {a + b}", f"{a} + {b} = {a + b + 1 + i % 3}"
        if i % 3 == 0:
            good += ", since adding the ones first gives the same sum."
        rows.append({"prompt": f"What is {a} + {b}?", "chosen": good, "rejected": bad, "subset": subsets[i % 4]})
    return rows


def rewardbench_agreement(tmp: Path) -> dict:
    """Accuracy on `rewardbench_pairs` scored by nexus (`rm.score`, RewardBench's strict wins) and by
    the exported model through RewardBench's text convention (`rewardbench_rewards`)."""
    from nexus.rewardbench import pair_wins

    tok = layout_tokenizer("chatml_pad_ne_eos")
    rm = native_rm(random_classifier(tok, encoder=False).base_model, tok, tmp / "body", encoder=False, raw=False)
    rows = rewardbench_pairs()
    prompts = [r["prompt"] for r in rows]
    ours = pair_wins(rm.score(prompts, [r["chosen"] for r in rows]).rewards.numpy(),
                     rm.score(prompts, [r["rejected"] for r in rows]).rewards.numpy())
    model, etok = _export(rm, tmp / "export")
    theirs = pair_wins(rewardbench_rewards(model, etok, prompts, [r["chosen"] for r in rows]).numpy(),
                       rewardbench_rewards(model, etok, prompts, [r["rejected"] for r in rows]).numpy())
    return {"pairs": len(rows), "nexus": float(ours.mean()), "rewardbench": float(theirs.mean()),
            "same_wins": bool((ours == theirs).all())}


def test_rewardbench_accuracy_of_the_export_equals_nexus_pair_for_pair(tmp_path):
    result = rewardbench_agreement(tmp_path)
    assert result["same_wins"] and result["nexus"] == result["rewardbench"]
    assert 0 < result["nexus"] < 1  # both outcomes occur, so a flipped or shifted score would show


def _export(rm, folder: Path):
    rm.export_hf(folder)
    return AutoModelForSequenceClassification.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


if __name__ == "__main__":  # the conformance table: python -m tests.test_conventions
    import tempfile

    print("| layout | " + " | ".join(PATHS) + " |")
    print("|---" * (len(PATHS) + 1) + "|")
    for layout in LAYOUTS:
        with tempfile.TemporaryDirectory() as tmp:
            row = conformance(layout, Path(tmp))
        cells = [value if isinstance(value, str) else f"{value:.1e}" for value in (row[p] for p in PATHS)]
        print(f"| {layout} | " + " | ".join("n/a" if c.startswith("n/a") else c for c in cells) + " |")
    with tempfile.TemporaryDirectory() as tmp:
        print("\nRewardBench layout, 36 pairs:", rewardbench_agreement(Path(tmp)))
