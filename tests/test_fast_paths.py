"""The scoring fast paths and benchmark helpers: token-budget batching, shared-prefix scoring,
int8 quantisation, FLOP counting and the exponent fit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from benchmarks.roofline import FlopModel, count_flops
from benchmarks.scaling import fit_exponent
from nexus.backbones import load_backbone
from nexus.batching import prompt_groups, token_budget_batches
from nexus.models.scalar import ScalarRewardModel
from nexus.quantize import conv1d_to_linear, quantize_int8

PROMPT = "Solve step by step: (23 + 17) * 4 - 9, then check every line."
CANDIDATES = ["23 + 17 = 40\n40 * 4 = 160\n160 - 9 = 151", "23 + 17 = 41\n41 * 4 = 164", "", "x", "é ✓ 151",
              "23 + 17 = 40\n40 * 4 = 161\n161 - 9 = 152\nso 152"]


def scalar(name: str, **kwargs) -> ScalarRewardModel:
    torch.manual_seed(0)
    return ScalarRewardModel(load_backbone(name, **kwargs), head_hidden=16, dropout=0.0).eval()


class BodyInputs:
    """Records the (rows, width) of every forward of a backbone's transformer body (a forward pre-hook)."""

    def __init__(self, backbone):
        self.shapes = []
        self.handle = backbone.model.base_model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        self.shapes.append(tuple(kwargs["input_ids"].shape))

    @property
    def tokens(self) -> int:
        return sum(rows * width for rows, width in self.shapes)


def test_token_budget_batches_cover_every_index_within_the_budget():
    lengths = [5, 40, 12, 12, 3, 100, 7, 30, 1, 12]
    batches = token_budget_batches(lengths, max_tokens=36)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest  # longest first
        assert len(batch) * longest <= 36 or len(batch) == 1
    # the two rows over budget (40 and 100) go alone; the rest pack greedily, longest first
    assert batches == [[5], [1], [7], [2, 3, 9], [6, 0, 4, 8]]
    with pytest.raises(ValueError, match="max_tokens=0"):
        token_budget_batches(lengths, 0)


def test_a_padding_bound_keeps_short_rows_out_of_a_long_rows_batch():
    lengths = [100, 90, 20, 20, 18, 10]
    assert token_budget_batches(lengths, max_tokens=1000) == [[0, 1, 2, 3, 4, 5]]  # 60% padding
    batches = token_budget_batches(lengths, max_tokens=1000, max_padding=0.25)
    assert batches == [[0, 1], [2, 3, 4, 5]]
    for batch in batches:
        padded = len(batch) * lengths[batch[0]]
        assert padded - sum(lengths[i] for i in batch) <= 0.25 * padded
    with pytest.raises(ValueError, match="max_padding"):
        token_budget_batches(lengths, 1000, max_padding=1.0)


def test_units_of_several_rows_stay_together_within_the_budget():
    # three requests: 4 rows (longest 30, 100 real tokens), 1 row of 50, 3 rows (longest 10, 24 real)
    lengths, rows, tokens = [30, 50, 10], [4, 1, 3], [100, 50, 24]
    # 50 alone; 4 rows of 30 (120 padded) plus 3 more rows at width 30 would be 210 > 150
    assert token_budget_batches(lengths, 150, rows=rows, tokens=tokens) == [[1], [0], [2]]
    # at 210, 5 x 50 = 250 does not fit, but 7 rows of 30 do
    assert token_budget_batches(lengths, 210, rows=rows, tokens=tokens) == [[1], [0, 2]]
    assert token_budget_batches(lengths, 400, rows=rows, tokens=tokens) == [[1, 0, 2]]  # 8 x 50 = 400
    # padding of that batch: 400 - 174 real = 226 tokens, 56%: a 0.5 bound splits it
    assert token_budget_batches(lengths, 400, 0.5, rows=rows, tokens=tokens) == [[1, 0], [2]]


def test_score_with_a_padding_bound_gives_the_same_rewards(mixed_inputs):
    rm = scalar("tiny-gpt2")
    prompts, responses = mixed_inputs
    bounded = rm.score(prompts, responses, max_tokens=4096, max_padding=0.1, share_prompts=False).rewards
    assert torch.allclose(bounded, rm.score(prompts, responses, batch_size=1).rewards, atol=1e-5)
    with pytest.raises(ValueError, match="max_padding"):
        rm.score(prompts, responses, max_padding=-0.5)


def test_score_with_a_token_budget_matches_fixed_batches_and_respects_it(mixed_inputs):
    rm = scalar("tiny-gpt2")
    prompts, responses = mixed_inputs
    prompts, responses = prompts * 3, [r + "!" * i for i, r in enumerate(responses * 3)]
    fixed = rm.score(prompts, responses, batch_size=4, share_prompts=False).rewards
    lengths = [len(ids) for ids in rm.backbone.token_ids(prompts, responses)]
    budget = 2 * max(lengths) + 5  # at most two of the longest, more of the short ones
    seen = BodyInputs(rm.backbone)
    budgeted = rm.score(prompts, responses, max_tokens=budget, share_prompts=False).rewards
    torch.testing.assert_close(budgeted, fixed, atol=1e-5, rtol=0)
    assert all(rows * width <= budget for rows, width in seen.shapes)
    assert max(rows for rows, _ in seen.shapes) > 2  # short inputs were packed more than 2 to a batch
    assert sum(rows for rows, _ in seen.shapes) == len(prompts)
    rm.max_tokens = 1  # the attribute works too; every row is over budget, so each goes alone
    torch.testing.assert_close(rm.score(prompts, responses, share_prompts=False).rewards, fixed, atol=1e-5, rtol=0)
    assert seen.shapes[-len(prompts):] == [(1, n) for n in sorted(lengths, reverse=True)]


@pytest.mark.parametrize("name, kwargs", [("tiny-gpt2", {}), ("tiny-llama", {}), ("tiny-llama", {"lm_logprobs": True}),
                                          ("tiny-gpt2", {"lm_logprobs": True})])
def test_shared_prefix_scoring_equals_plain_scoring_and_reads_fewer_tokens(name, kwargs):
    rm = scalar(name, **kwargs)
    plain = rm.score([PROMPT] * len(CANDIDATES), CANDIDATES, share_prompts=False).rewards
    seen = BodyInputs(rm.backbone)
    shared = rm.score_candidates(PROMPT, CANDIDATES).rewards
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    assert len(set(shared.round(decimals=4).tolist())) == len(CANDIDATES)  # an order bug could not hide
    prompt_tokens = len(rm.backbone.token_ids([PROMPT], [""])[0]) - 1
    # one packed row: the prompt once, then every candidate's own tokens
    assert len(seen.shapes) == 1 and seen.shapes[0][0] == 1
    assert seen.tokens < len(CANDIDATES) * prompt_tokens
    seen.shapes.clear()
    torch.testing.assert_close(rm.score_candidates(PROMPT, CANDIDATES, max_tokens=3 * prompt_tokens).rewards,
                               plain, atol=1e-5, rtol=0)
    assert len(seen.shapes) > 1  # a token budget cuts the candidates over several rows


@pytest.mark.parametrize("name, kwargs", [("tiny-gpt2", {}), ("tiny-llama", {}), ("tiny-llama", {"lm_logprobs": True}),
                                          ("tiny-gpt2", {"lm_logprobs": True})])
def test_score_packs_inputs_that_share_a_prompt_and_matches_scoring_each_alone(name, kwargs, mixed_inputs):
    rm = scalar(name, **kwargs)
    prompts, responses = mixed_inputs
    # pairs (chosen, rejected), a best-of-6 group, and inputs whose prompt appears once, interleaved
    prompts = [p for p in prompts for _ in range(2)] + [PROMPT] * len(CANDIDATES) + ["alone", "also alone"]
    responses = [r + tail for r in responses for tail in ("", " no")] + CANDIDATES + ["1", "2"]
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0)).tolist()
    prompts, responses = [prompts[i] for i in order], [responses[i] for i in order]
    alone = rm.score(prompts, responses, share_prompts=False, batch_size=1).rewards
    seen = BodyInputs(rm.backbone)
    packed = rm.score(prompts, responses).rewards
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=0)
    assert len(set(packed.round(decimals=4).tolist())) >= len(prompts) - 2  # an order bug could not hide
    # one row per shared prompt (5 pairs, 1 best-of-6) and one per input alone (2): 8 rows, not 18
    assert sum(rows for rows, _ in seen.shapes) == 8
    with pytest.raises(ValueError, match=r"responses\[2\] is int"):
        rm.score(["a", "a", "a"], ["x", "y", 3])


def test_prompt_groups_split_long_groups_and_keep_over_long_inputs_alone():
    ids = [[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 7], [9, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9], [8]]
    prompts = ["p", "p", "p", "q", "r", "r"]
    groups, alone = prompt_groups(prompts, ids, max_length=8, max_tokens=7)
    # "p" shares [1, 2]; its suffixes (2, 3, 1 tokens) fill rows of <= 7 tokens; "q" appears once;
    # "r" has an input over max_length (it would be cut from the left), so both of its inputs go alone
    assert [(g.indices, g.prefix, g.suffixes) for g in groups] == [([0, 1], [1, 2], [[3, 4], [3, 5, 6]]),
                                                                   ([2], [1, 2], [[7]])]
    assert alone == [3, 4, 5]
    same = prompt_groups(["p", "p"], [[1, 2], [1, 2]], max_length=8, max_tokens=100)[0]
    assert [(g.prefix, g.suffixes) for g in same] == [([1], [[2], [2]])]  # each keeps its last token


@pytest.mark.parametrize("lm_logprobs", [False, True])
def test_packed_features_match_the_plain_forward_on_a_real_model(lm_logprobs):
    backbone = load_backbone("arith-lm", lm_logprobs=lm_logprobs)
    prompts = ["12 + 7 * 3", "12 + 7 * 3", "5 - 9", "5 - 9", "5 - 9"]
    responses = ["7 * 3 = 21\n12 + 21 = 33", "7 * 3 = 21\n12 + 21 = 34", "5 - 9 = -4", "5 - 9 = 4", ""]
    ids = backbone.token_ids(prompts, responses)
    groups, alone = prompt_groups(prompts, ids, backbone.max_length, max_tokens=4096)
    assert alone == [] and [g.indices for g in groups] == [[0, 1], [2, 3, 4]]
    with torch.inference_mode():
        packed = backbone.packed_features([(g.prefix, g.suffixes) for g in groups])
        plain = backbone(**backbone.encode(prompts, responses))
    torch.testing.assert_close(packed, plain, atol=1e-4, rtol=1e-4)
    assert packed.shape == (5, backbone.feature_size)
    with pytest.raises(ValueError, match="group 0"):
        backbone.packed_features([([1, 2], [[]])])
    with pytest.raises(ValueError, match="decoder"):
        load_backbone("tiny-bert").packed_features([([1], [[2]])])


def test_shared_prefix_scoring_falls_back_for_encoders_and_one_candidate():
    rm = scalar("tiny-bert")
    torch.testing.assert_close(rm.score_candidates(PROMPT, CANDIDATES).rewards,
                               rm.score([PROMPT] * len(CANDIDATES), CANDIDATES).rewards, atol=1e-6, rtol=0)
    gpt = scalar("tiny-gpt2")
    torch.testing.assert_close(gpt.score_candidates(PROMPT, CANDIDATES[:1]).rewards,
                               gpt.score([PROMPT], CANDIDATES[:1]).rewards, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"responses\[1\] is int"):
        gpt.score_candidates(PROMPT, ["a", 3])
    with pytest.raises(ValueError, match="prompt is list"):
        gpt.score_candidates([PROMPT], ["a"])


def test_conv1d_to_linear_keeps_gpt2_outputs():
    rm = scalar("tiny-gpt2")
    before = rm.score([PROMPT] * 3, CANDIDATES[:3]).rewards
    conv1d_to_linear(rm)
    assert sum(isinstance(m, nn.Linear) for m in rm.backbone.modules()) == 8  # 4 per layer, 2 layers
    torch.testing.assert_close(rm.score([PROMPT] * 3, CANDIDATES[:3]).rewards, before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_int8_quantisation_scores_close_to_fp32_and_replaces_the_linears(name):
    rm = scalar(name)
    n_linear = sum(isinstance(m, nn.Linear) for m in rm.modules())
    fp32 = rm.score([PROMPT] * len(CANDIDATES), CANDIDATES).rewards
    q8 = quantize_int8(rm)
    int8 = q8.score([PROMPT] * len(CANDIDATES), CANDIDATES).rewards
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert sum(isinstance(m, nn.Linear) for m in q8.modules()) == 0
    assert sum(isinstance(m, dynamic) for m in q8.modules()) >= n_linear  # GPT-2's Conv1D count too
    assert sum(isinstance(m, nn.Linear) for m in rm.modules()) == n_linear  # the original is untouched
    gap = (int8 - fp32).abs()
    assert gap.max() < 0.1 * fp32.std() + 0.02 and gap.max() > 0  # close, and really quantised
    kept = quantize_int8(rm, keep=["mlp"])  # GPT-2's mlp.c_fc/c_proj, Llama's mlp.*_proj stay float32
    names = [n for n, m in kept.named_modules() if isinstance(m, nn.Linear)]
    assert names and all(".mlp." in n for n in names)
    assert len(names) == sum(".mlp." in n for n, m in rm.named_modules() if isinstance(m, (nn.Linear, Conv1D)))


def test_flop_counter_matches_hand_counts():
    linear, x = nn.Linear(32, 16), torch.randn(8, 32)
    assert count_flops(lambda: linear(x))[1] == 2 * 8 * 32 * 16
    q, k = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 6, 8)
    with torch.inference_mode():  # the CPU path FlopCounterMode misses without our formula
        assert count_flops(lambda: F.scaled_dot_product_attention(q, k, k))[1] == 4 * 2 * 4 * 10 * 6 * 8


def test_flop_model_predicts_a_length_it_was_not_fitted_on():
    backbone = load_backbone("tiny-llama")
    model = FlopModel.fit(backbone, lengths=(8, 16))
    # 2 layers: q, o 64x64, k, v 64x32, MLP 3 x 64x128 -> 2 FLOPs per weight per token. Some
    # transformers versions compute the rotary angles as a matmul too (head_dim FLOPs per token,
    # about 1e-4 of the total); the fit counts what the model runs.
    assert model.per_token == pytest.approx(2 * 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128), rel=2e-4)
    assert model.per_pair == pytest.approx(2 * 4 * 64)  # 2 layers x 4 x hidden
    ids = torch.randint(0, 100, (3, 40))
    with torch.inference_mode():
        counted = count_flops(lambda: backbone.model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids)))[1]
    assert model.sequences([40] * 3) == pytest.approx(counted, rel=2e-4)


def test_fit_exponent_recovers_a_power_law():
    x = [1, 2, 4, 8, 16, 32]
    assert fit_exponent(x, [3.0 * v ** 1.7 for v in x]) == pytest.approx(1.7)
    assert fit_exponent(x, [0.5 * v ** -0.25 for v in x]) == pytest.approx(-0.25)


@pytest.mark.parametrize("name, kwargs", [("tiny-llama", {"lm_logprobs": True}), ("tiny-gpt2", {})])
def test_a_packed_training_batch_gives_the_plain_batch_rewards_and_gradients(name, kwargs):
    from nexus.tasks.arithmetic import generate
    from nexus.data.collators import PairwiseCollator
    from nexus.losses import bradley_terry_loss

    rm = scalar(name, **kwargs)  # eval: GPT-2's dropout would differ between the two passes; grads still flow
    pairs = generate(6, seed=3)["pairwise"][:6]
    plain = PairwiseCollator(rm.backbone)(pairs)
    packed = rm.data_collator()(pairs)  # the scalar RM's own collator shares prompts
    assert packed["input_ids"].shape[0] == len(pairs) and packed["attention_mask"].ndim == 4
    grads = []
    for batch in (plain, packed):
        rm.zero_grad()
        rewards = rm(**batch)
        bradley_terry_loss(rewards[:len(pairs)], rewards[len(pairs):]).backward()
        grads.append((rewards.detach(), [p.grad.clone() for p in rm.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=0)  # chosen first, then rejected
    assert len(grads[1][1]) == len(grads[0][1]) > 0
    for packed_grad, plain_grad in zip(grads[1][1], grads[0][1]):
        torch.testing.assert_close(packed_grad, plain_grad, atol=1e-5, rtol=1e-4)


def test_profile_matmul_flops_match_the_shapes_the_profiler_recorded():
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.profile_scoring import MATMULS, matmul_flops

    a, b, bias, batch = torch.randn(6, 5), torch.randn(5, 3), torch.randn(3), torch.randn(4, 6, 5)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        torch.mm(a, b), torch.addmm(bias, a, b), torch.bmm(batch, batch.transpose(1, 2))
    counted = sum(matmul_flops(e) for e in prof.events() if e.name in MATMULS)
    assert counted == 2 * 6 * 5 * 3 * 2 + 2 * 4 * 6 * 5 * 6


def test_rows_are_repriced_against_a_new_peak_and_cells_keep_their_pipes():
    from benchmarks.common import Row, markdown

    row = Row("scoring", "x", 1.0, "5 responses/s", roofline="90.0 GFLOP/s, 90% of peak", note="max |reward diff| 1e-6")
    assert row.with_peak(180.0).roofline == "90.0 GFLOP/s, 50% of peak"
    assert Row("rules", "y", 1.0, "", roofline="no FLOPs").with_peak(1.0).roofline == "no FLOPs"
    table = markdown([row]).splitlines()
    assert table[-1].count(" | ") == 6 and "max \\|reward diff\\| 1e-6" in table[-1]


def test_the_packed_log_likelihood_summary_is_the_padded_one():
    from nexus.backbones.logprobs import grouped_logprob_summary, logprob_summary

    torch.manual_seed(0)
    logp, valid = -torch.rand(6, 9) * 5, torch.rand(6, 9) > 0.3
    valid[2] = False  # a row with nothing scored: 0 and 0
    rows = torch.arange(6)[:, None].expand(6, 9)
    order = torch.randperm(int(valid.sum()))  # packed tokens come in any order
    grouped = grouped_logprob_summary(logp[valid][order], rows[valid][order], 6)
    torch.testing.assert_close(grouped, logprob_summary(logp, valid))
    assert grouped[2].tolist() == [0.0, 0.0] and (grouped[[0, 1, 3, 4, 5], 1] < grouped[[0, 1, 3, 4, 5], 0]).all()
