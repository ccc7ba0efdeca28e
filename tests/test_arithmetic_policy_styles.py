"""ArithmeticPolicy: unchanged default samples, equivalent formats under style_rate, and its pass@1 knob."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from nexus.tasks import arithmetic
from nexus.tasks.arithmetic import ArithmeticConfig, ArithmeticPolicy

_LINE = re.compile(r"(?:Step (\d+): )?(-?\d+) ?([-+*]) ?(-?\d+) ?= ?(-?\d+)")


def digest(policy):
    prompts = [p.prompt for p in arithmetic.generate(6, 11, arithmetic.SPLITS["shifted_ops"])["pairwise"]]
    prefix = arithmetic.solve(*arithmetic.parse_prompt(prompts[1]))[0][0]
    out = [policy.generate(prompts, 5, seed=3), policy.complete(prompts[:2], ["", prefix], 4, seed=1)]
    return hashlib.sha256(json.dumps(out).encode()).hexdigest()[:16]


def test_defaults_give_the_samples_the_policy_always_gave():
    # Digests of the samples before style_rate existed: caches and seeded studies stay valid.
    assert digest(ArithmeticPolicy()) == "b8cf73e9ba2ffa87"
    assert digest(ArithmeticPolicy(error_rate=0.5, max_offset=2)) == "330eb196a890aa39"
    assert digest(ArithmeticPolicy(style_rate=0.0)) == "b8cf73e9ba2ffa87"
    assert ArithmeticPolicy().spec() == {"policy": "arithmetic", "error_rate": 0.2, "max_offset": 3}
    assert ArithmeticPolicy(style_rate=0.5).spec()["style_rate"] == 0.5
    with pytest.raises(ValueError, match="style_rate=1.5"):
        ArithmeticPolicy(style_rate=1.5)


def canonical(sample: str, start: int) -> list[tuple[int, str, int, int]]:
    """The steps of a formatted sample as (x, op, y, z), undoing numbering, spacing and commuting
    against the running value (`start`, then the previous line's result)."""
    steps, value = [], start
    for k, line in enumerate(sample.split("\n"), start=1):
        number, x, op, y, z = _LINE.fullmatch(line).groups()
        assert number is None or int(number) == k
        x, y, z = int(x), int(y), int(z)
        if x != value:
            assert op in "+*" and y == value >= 0  # commuted, only on a non-negative running value
            x, y = y, x
        steps.append((x, op, y, z))
        value = z
    return steps


def test_formats_keep_every_value_and_make_right_solutions_distinct():
    cfg = ArithmeticConfig(operators="+-*", min_steps=3, max_steps=4)
    prompts = [p.prompt for p in arithmetic.generate(30, 5, cfg)["pairwise"]]
    plain = ArithmeticPolicy(error_rate=0.3).generate(prompts, 32, seed=9)
    styled = ArithmeticPolicy(error_rate=0.3, style_rate=0.5).generate(prompts, 32, seed=9)
    lines, swapped = [], []
    for prompt, a_pool, b_pool in zip(prompts, plain, styled):
        start = arithmetic.parse_prompt(prompt)[0][0]
        for a, b in zip(a_pool, b_pool):  # same values, same errors: only the writing differs
            steps = canonical(a, start)
            assert canonical(b, start) == steps and a == "\n".join(arithmetic.format_step(*t) for t in steps)
            for line, (x, op, _, _) in zip(b.split("\n"), steps):
                lines.append(line)
                if op in "+*" and x >= 0:
                    swapped.append(int(_LINE.fullmatch(line).group(2)) != x)
    assert 0.35 < np.mean([line.startswith("Step ") for line in lines]) < 0.65
    assert 0.35 < np.mean([" " not in line.split(": ")[-1] for line in lines]) < 0.65
    assert 0.35 < np.mean(swapped) < 0.65
    right = ArithmeticPolicy(error_rate=0.0, style_rate=0.5).generate(prompts, 64, seed=2)
    assert all(len(set(pool)) == 1 for pool in ArithmeticPolicy(error_rate=0.0).generate(prompts, 64, seed=2))
    assert np.mean([len(set(pool)) for pool in right]) > 20  # 2 layouts x 2-4 forms per line


def test_formatted_samples_grade_like_their_plain_twins():
    # Needs the grader that reads "Step k:", any spacing and commuted + and * operands.
    cfg = ArithmeticConfig(operators="+-*", min_steps=3, max_steps=4)
    prompts = [p.prompt for p in arithmetic.generate(40, 6, cfg)["pairwise"]]
    plain = ArithmeticPolicy(error_rate=0.25).generate(prompts, 16, seed=4)
    styled = ArithmeticPolicy(error_rate=0.25, style_rate=0.5).generate(prompts, 16, seed=4)
    for prompt, a_pool, b_pool in zip(prompts, plain, styled):
        for a, b in zip(a_pool, b_pool):
            assert (arithmetic.label_steps(prompt, arithmetic.parse_steps(b))
                    == arithmetic.label_steps(prompt, arithmetic.parse_steps(a)))
            assert arithmetic.gold_reward(prompt, b) == arithmetic.gold_reward(prompt, a)
    right = ArithmeticPolicy(error_rate=0.0, style_rate=0.5).generate(prompts, 8, seed=1)
    assert all(arithmetic.gold_reward(p, s) == 1.0 and all(arithmetic.label_steps(p, arithmetic.parse_steps(s)))
               for p, pool in zip(prompts, right) for s in pool)
    prefix = "Step 1: " + right[0][0].split("\n")[0].split(": ")[-1]
    done = ArithmeticPolicy(error_rate=0.0, style_rate=0.5).complete(prompts[:1], [prefix], 8, seed=0)[0]
    assert all(all(arithmetic.label_steps(prompts[0], arithmetic.parse_steps(s))) for s in done)


def test_error_rate_for_hits_the_pass_rate_on_a_three_to_four_step_level():
    rate = ArithmeticPolicy.error_rate_for(0.45, [3, 4])
    assert ArithmeticPolicy.pass_at_1(rate, [3, 4]) == pytest.approx(0.45, abs=1e-12)
    assert ArithmeticPolicy.error_rate_for(0.64, 2) == pytest.approx(0.2, abs=1e-12)
    assert ArithmeticPolicy.pass_at_1(0.2, 3) == pytest.approx(0.512)
    cfg = ArithmeticConfig(min_steps=3, max_steps=4)
    prompts = [p.prompt for p in arithmetic.generate(400, 8, cfg)["pairwise"]]
    pools = ArithmeticPolicy(error_rate=rate).generate(prompts, 20, seed=0)
    all_right = np.mean([all(arithmetic.label_steps(p, arithmetic.parse_steps(s))) for p, pool in zip(prompts, pools)
                         for s in pool])
    final_right = np.mean([arithmetic.gold_reward(p, s) for p, pool in zip(prompts, pools) for s in pool])
    # 8,000 samples (400 problems, whose 3/4-step mix adds spread): 0.03 is about 4 standard errors.
    assert all_right == pytest.approx(0.45, abs=0.03) and all_right <= final_right < all_right + 0.03


def test_carry_errors_change_the_tens_and_keep_the_last_digit():
    from nexus.tasks.arithmetic import ArithmeticPolicy, problems

    prompts = ["23 + 45 - 17", "81 - 29 + 64 - 12"]
    plain = ArithmeticPolicy(0.5).generate(prompts, 40, seed=3)
    carry = ArithmeticPolicy(0.5, error_unit=10).generate(prompts, 40, seed=3)
    offsets = set()
    for prompt, pool in zip(prompts, carry):
        truth, _ = problems.solve(*problems.parse_prompt(prompt))
        for sample in pool:
            for line, right in zip(problems.parse_steps(sample), truth):
                if line != right:  # the first wrong step: its result is off by a multiple of 10
                    offsets.add(int(line.rsplit("=", 1)[1]) - int(right.rsplit("=", 1)[1]))
                    break
    assert offsets and all(o % 10 == 0 and 10 <= abs(o) <= 30 for o in offsets)
    # the same draws decide which steps go wrong, so the pass rates agree
    rate = lambda pools: sum(problems.gold_reward(p, s) for p, pool in zip(prompts, pools) for s in pool)  # noqa: E731
    assert rate(plain) == rate(carry)
    assert ArithmeticPolicy(0.5, error_unit=10).spec()["error_unit"] == 10 and "error_unit" not in ArithmeticPolicy().spec()
