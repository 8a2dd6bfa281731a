"""The calibration block: the formula, plug-and-play on BART and T5, generation, gradients, saving."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from torch.nn import functional as F
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BertConfig, BertModel
from transformers.modeling_outputs import BaseModelOutput

from repcali import RepCaliConfig, RepCaliError, attach_repcali, detach_repcali
from repcali.calibration import CONFIG_NAME, WEIGHTS_NAME, CalibrationBlock, backbone_state_dict, find_block
from repcali.modeling import load_model, save_model

FAMILIES = ("bart", "t5")
TEXTS = ["They propose a new method for parsing.", "Existing systems fail on long documents with many entities."]


def load(tiny_dirs, family):
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs[family])
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    labels = tokenizer(
        text_target=["A method.", "Systems fail on long documents."], padding=True, return_tensors="pt"
    )["input_ids"]
    return model, tokenizer, batch, labels


def randomize(block: CalibrationBlock) -> None:
    """Non-trivial LayerNorm parameters, so a test cannot pass by LN being the identity."""
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)


def hand_calibrated(h: torch.Tensor, block: CalibrationBlock, placement: str, lam: float) -> torch.Tensor:
    d = block.learn_emb.weight[1]  # the all-ones Shape Seed reads row 1 for every position
    if placement == "post_add":
        return F.layer_norm(h + lam * d, (h.shape[-1],), block.norm.weight, block.norm.bias, block.norm.eps)
    if placement == "on_delta":
        return h + lam * F.layer_norm(d, (h.shape[-1],), block.norm.weight, block.norm.bias, block.norm.eps)
    return h + lam * d


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["post_add", "on_delta", "none"])
def test_calibrated_forward_equals_hand_computation(tiny_dirs, family, placement):
    model, _, batch, labels = load(tiny_dirs, family)
    with torch.no_grad():
        h = model.get_encoder()(**batch).last_hidden_state
    block = attach_repcali(model, RepCaliConfig(lam=0.7, layernorm=placement))
    if block.norm is not None:
        randomize(block)
    with torch.no_grad():
        calibrated = model(**batch, labels=labels).logits
        p = hand_calibrated(h, block, placement, lam=0.7)
        # encoder_outputs given: the encoder (and its hook) is skipped, the decoder reads p as is
        expected = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=p), attention_mask=batch["attention_mask"], labels=labels
        ).logits
        vanilla = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=h), attention_mask=batch["attention_mask"], labels=labels
        ).logits
    torch.testing.assert_close(calibrated, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(calibrated, vanilla, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_calib_off_is_bit_identical_to_vanilla(tiny_dirs, family):
    model, _, batch, labels = load(tiny_dirs, family)
    vanilla = AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family]).eval()
    with torch.no_grad():
        reference = vanilla(**batch, labels=labels).logits
        assert torch.equal(model(**batch, labels=labels).logits, reference)
        attach_repcali(model)
        assert not torch.equal(model(**batch, labels=labels).logits, reference)
        detach_repcali(model)
        assert find_block(model) is None
        assert torch.equal(model(**batch, labels=labels).logits, reference)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_calibrates_once_and_uses_calibrated_states(tiny_dirs, family, num_beams):
    model, _, batch, _ = load(tiny_dirs, family)
    block = attach_repcali(model, RepCaliConfig(lam=2.0))
    randomize(block)
    calls = []
    block.register_forward_hook(lambda module, args, output: calls.append(output.shape))
    settings = dict(num_beams=num_beams, max_new_tokens=6, do_sample=False)
    generated = model.generate(**batch, **settings)
    assert len(calls) == 1, "the encoder (and so the block) must run once per generate() call"
    assert calls[0][0] == len(TEXTS), "calibration happens before beam expansion"

    with torch.no_grad():
        h = model.get_encoder()(**batch).last_hidden_state  # hook fires: h is calibrated here
    detach_repcali(model)
    manual = model.generate(
        encoder_outputs=BaseModelOutput(last_hidden_state=h), attention_mask=batch["attention_mask"], **settings
    )
    assert torch.equal(generated, manual)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_the_block_and_return_dict_false_agrees(tiny_dirs, family):
    model, _, batch, labels = load(tiny_dirs, family)
    block = attach_repcali(model)
    model.train()
    torch.manual_seed(0)
    loss = model(**batch, labels=labels).loss
    loss.backward()
    grad = block.learn_emb.weight.grad
    assert grad[1].abs().sum() > 0, "row 1 (the Shape Seed's index) receives the gradient"
    assert grad[0].abs().sum() == 0 and grad[2:].abs().sum() == 0
    assert block.norm.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        as_dict = model(**batch, labels=labels).logits
        as_tuple = model(**batch, labels=labels, return_dict=False)[1]
    assert torch.equal(as_dict, as_tuple)


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_trains_only_the_block(tiny_dirs, family):
    model, _, batch, labels = load(tiny_dirs, family)
    block = attach_repcali(model, RepCaliConfig(train="frozen"))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"repcali.{name}" for name, _ in block.named_parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(**batch, labels=labels).loss.backward()
    optimizer.step()
    for name, p in model.named_parameters():
        assert torch.equal(before[name], p) == (name not in trainable), name


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_keeps_base_keys(tiny_dirs, family, tmp_path):
    model, tokenizer, batch, labels = load(tiny_dirs, family)
    block = attach_repcali(model, RepCaliConfig(lam=0.5, layernorm="on_delta", num_embeddings=16))
    randomize(block)
    save_model(model, tokenizer, tmp_path / "calibrated")
    save_model(AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family]), tokenizer, tmp_path / "vanilla")

    def keys(directory):
        with safe_open(str(directory / "model.safetensors"), "pt") as handle:
            return set(handle.keys())

    assert keys(tmp_path / "calibrated") == keys(tmp_path / "vanilla")
    assert set(backbone_state_dict(model)) == set(
        AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family]).state_dict()
    )
    assert (tmp_path / "calibrated" / WEIGHTS_NAME).is_file() and (tmp_path / "calibrated" / CONFIG_NAME).is_file()

    reloaded = load_model(tmp_path / "calibrated").eval()
    assert find_block(reloaded).config == block.config
    with torch.no_grad():
        assert torch.equal(reloaded(**batch, labels=labels).logits, model(**batch, labels=labels).logits)
    assert find_block(load_model(tmp_path / "vanilla")) is None


def test_attach_twice_and_non_encoder_decoder_fail_clearly(tiny_dirs):
    model, *_ = load(tiny_dirs, "bart")
    attach_repcali(model)
    with pytest.raises(RepCaliError, match="already attached"):
        attach_repcali(model)
    encoder_only = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100)
    )
    with pytest.raises(RepCaliError, match="encoder-decoder"):
        attach_repcali(encoder_only)


def test_config_validation_and_default_table_size(tiny_dirs):
    with pytest.raises(RepCaliError, match="layernorm"):
        RepCaliConfig(layernorm="pre")
    with pytest.raises(RepCaliError, match="train"):
        RepCaliConfig(train="lora")
    with pytest.raises(RepCaliError, match="num_embeddings"):
        RepCaliConfig(num_embeddings=1)
    bart, *_ = load(tiny_dirs, "bart")
    t5, *_ = load(tiny_dirs, "t5")
    assert attach_repcali(bart).learn_emb.num_embeddings == bart.config.max_position_embeddings
    assert attach_repcali(t5).learn_emb.num_embeddings == 512  # T5 has relative positions: its usual 512


def test_seq2seq_trainer_predictions_use_the_calibrated_states(tiny_dirs, tmp_path):
    from transformers import DataCollatorForSeq2Seq, GenerationConfig, Seq2SeqTrainingArguments

    from repcali.training import Seq2SeqTrainer

    model, tokenizer, batch, _ = load(tiny_dirs, "t5")
    randomize(attach_repcali(model, RepCaliConfig(lam=2.0)))
    generation = GenerationConfig.from_model_config(model.config)
    generation.update(num_beams=2, max_length=7, do_sample=False)
    from datasets import Dataset

    labels = tokenizer(text_target=["A method.", "Systems fail."])["input_ids"]
    features = Dataset.from_dict({"input_ids": tokenizer(TEXTS)["input_ids"], "labels": labels})
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        predict_with_generate=True,
        report_to=[],
        generation_config=generation,
        per_device_eval_batch_size=2,
    )
    trainer = Seq2SeqTrainer(model=model, args=args, data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    predicted = trainer.predict(features).predictions
    expected = model.generate(**batch, generation_config=generation)
    assert predicted.shape[0] == 2
    for row, reference in zip(predicted, expected, strict=True):
        tokens = [t for t in row.tolist() if t not in (-100, tokenizer.pad_token_id)]
        assert tokens == [t for t in reference.tolist() if t != tokenizer.pad_token_id]
