"""Over-long inputs: tokenising a huge string whole, then truncating, vs cutting it by characters first.

python -m benchmarks.long_inputs [--chars 1000000] [--backbone tiny-gpt2]

`Backbone.token_ids` cuts a text longer than max_length x (bound on characters per token) before
tokenising (`Backbone.clip_text`); the baseline tokenises the whole text and keeps its last
`max_length` tokens, which is what truncation keeps. Both give the same token ids (checked); the
rows print the time and the peak resident memory above the start of each.
"""

from __future__ import annotations

import time

from benchmarks.common import PeakRSS, Row, benchmark_parser, report
from nexus.backbones import load_backbone


def run(args) -> list[Row]:
    backbone = load_backbone(args.backbone)
    prompt, text = "What is 2 + 2?", "the answer is four " * (args.chars // 19)
    limit = backbone.max_length

    def whole():
        formatted = backbone.format(prompt, text)
        return backbone.tokenizer([formatted])["input_ids"][0][-limit:]

    def clipped():
        return backbone.token_ids([prompt], [text])[0][-limit:]

    results = {}
    for name, fn in (("tokenise whole, then truncate", whole), ("cut by characters first", clipped)):
        with PeakRSS() as peak:
            start = time.perf_counter()
            ids = fn()
            seconds = time.perf_counter() - start
        results[name] = (ids, seconds, peak.mib)
    (base_ids, base_s, base_mib), (ids, s, mib) = results.values()
    eos = backbone.tokenizer.eos_token_id
    kept = [t for t in ids if t != eos][-(limit - 1):]  # token_ids appends eos for decoders
    if kept != [t for t in base_ids if t != eos][-(limit - 1):]:
        raise AssertionError("the character cut changed the kept tokens")
    rows = [Row("long_inputs", "tokenise whole, then truncate", base_s, f"+{base_mib:.0f} MiB peak RSS", "baseline"),
            Row("long_inputs", "cut by characters first", s, f"+{mib:.0f} MiB peak RSS", f"{base_s / s:.1f}x",
                note=f"same last {limit} tokens")]
    return report(rows, f"one {len(text):,}-character response, backbone {args.backbone} (max_length {limit})")


def main(argv=None) -> list[Row]:
    parser = benchmark_parser(__doc__, repeats=None)
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--backbone", default="tiny-gpt2")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
