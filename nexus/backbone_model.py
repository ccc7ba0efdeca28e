"""`BackboneRewardModel`: the reward models built on one `nexus.backbones.Backbone`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

from nexus.base import RewardModel
from nexus.conversation import is_conversation
from nexus.batching import PACKED_MAX_TOKENS, PromptGroup, prompt_groups, token_budget_batches

BACKBONE_DIR = "backbone"


class BackboneRewardModel(RewardModel):
    """A reward model built on one `nexus.backbones.Backbone` (`self.backbone`), which holds what
    such families share: token-counted batches, prompt packing, the pairwise collator, and the
    checkpoint layout (the backbone's architecture and tokenizer in `backbone/`; every other
    config.json entry a constructor argument).
    """

    saved_entries: ClassVar[tuple[str, ...]] = (BACKBONE_DIR,)
    reads_conversations: ClassVar[bool] = True  # the backbone renders them with its chat template
    reads_features: ClassVar[bool] = True

    length_unit: ClassVar[str] = "tokens"

    def input_lengths(self, prompts: Sequence, responses: Sequence) -> list[int]:
        """Tokens per input, uncapped (an input over the backbone's max_length counts more than it).

        Counted with `backbone.token_ids` (exact for the scalar, ensemble, outcome and multi-objective
        RMs); an estimate where a family renders its own context (the judge's template, the process
        RM's step tokens; steps are counted joined by newlines).
        """
        texts = [r if isinstance(r, str) or is_conversation(r) else "\n".join(r) for r in responses]
        return [len(ids) for ids in self.backbone.token_ids(prompts, texts)]

    @property
    def max_input_length(self) -> int | None:
        return self.backbone.max_length

    def data_collator(self, seed: int = 0):
        """Pairs as chosen-then-rejected batches for `RewardTrainer`; families that pack prompts
        (`packs_prompts`) get each pair as one row that reads its prompt once."""
        from nexus.data.collators import PairwiseCollator

        return PairwiseCollator(self.backbone, getattr(self, "bootstrap_members", None), seed=seed,
                                share_prompts=self.packs_prompts)

    def _shares_prompts(self, share_prompts: bool) -> bool:
        return share_prompts and self.packs_prompts and getattr(self.backbone, "can_pack", False)

    def _packed_batches(self, prompts: Sequence[str], responses: Sequence[str],
                        max_tokens: int | None) -> tuple[list[list[PromptGroup]], list[int]]:
        """Batches of prompt groups to pack (`prompt_groups`, cut by the token budget) and the
        indices of the inputs to score alone."""
        budget = next((b for b in (max_tokens, self.max_tokens) if b is not None), PACKED_MAX_TOKENS)
        ids = self.backbone.token_ids(prompts, responses)
        groups, alone = prompt_groups(prompts, ids, self.backbone.max_length, budget)
        return [[groups[g] for g in idx] for idx in token_budget_batches([g.tokens for g in groups], budget)], alone

    def _save_extra(self, directory: Path) -> None:
        self.backbone.save_architecture(directory / BACKBONE_DIR)

    @classmethod
    def _from_config(cls, config: dict, directory: Path) -> "BackboneRewardModel":
        """The backbone from `backbone/` (architecture only; the weights come with the model's), and
        every other entry of `config_dict()` as a constructor argument."""
        from nexus.backbones import Backbone

        kwargs = {k: v for k, v in config.items() if k not in ("model_type", "backbone")}
        return cls(Backbone.from_architecture(directory / BACKBONE_DIR, config["backbone"]), **kwargs)
