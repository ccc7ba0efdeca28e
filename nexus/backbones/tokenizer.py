"""A byte-level tokenizer built locally, so tiny backbones need no hub.

Every UTF-8 byte is one token (256 symbols) plus three specials, so nothing a
user writes is ever mapped to `<unk>`: for arithmetic text it is exactly a
character-level tokenizer, which is what the arithmetic task LM wants.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def build_byte_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE with no merges: ids 0-2 are `<pad>`, `<eos>`, `<unk>`, then the 256 bytes."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *alphabet])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    # use_regex=False: no word splitting, so spaces and newlines stay single tokens.
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
    )
