"""The parameter table: T5 sizes and added parameters from configs alone, and the generated docs."""

from __future__ import annotations

import pytest

from repcali.config import PROJECT_ROOT
from repcali.params import T5_CONFIGS, count_added, document, markdown_table


def hand_total(config) -> int:
    """T5 v1.0 by hand: tied embeddings, q/k/v/o, ReLU feed-forward, weight-only layer norms."""
    d, inner, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    encoder_block = 4 * d * inner + 2 * d * ff + 2 * d
    decoder_block = 8 * d * inner + 2 * d * ff + 3 * d  # self- and cross-attention
    relative_bias = 2 * config.relative_attention_num_buckets * config.num_heads  # first block of each stack
    return (
        config.vocab_size * d
        + config.num_layers * encoder_block
        + config.num_decoder_layers * decoder_block
        + relative_bias
        + 2 * d  # final layer norms
    )


@pytest.mark.parametrize("label", list(T5_CONFIGS))
def test_t5_sizes_and_repcali_share_match_a_hand_count_and_the_papers_range(label):
    config = T5_CONFIGS[label]
    backbone, added = count_added(config, "frozen", {}, calib=True)
    assert backbone == hand_total(config)
    assert added == 512 * config.d_model + 2 * config.d_model  # LearnEmb (512 rows for T5) + LayerNorm
    assert 0 < 100 * added / backbone <= 0.8  # the paper: RepCali adds 0-0.8 %


def test_t5_base_adapter_and_lora_match_hand_counts():
    config = T5_CONFIGS["T5-base"]
    _, adapter = count_added(config, "adapter", {"bottleneck": 24})
    assert adapter == 2 * 24 * (2 * 768 * 24 + 24 + 768)  # after self-attention and FFN of 24 blocks
    _, lora = count_added(config, "lora", {"r": 8})
    assert lora == 884_736  # PEFT's own documented count for LoRA r=8 on t5-base (q, v)


@pytest.mark.slow  # builds 30 meta-device T5s, about 5 s
def test_parameter_table_in_docs_is_up_to_date():
    assert (PROJECT_ROOT / "docs" / "parameters.md").read_text() == document(markdown_table()), "run `make params`"
