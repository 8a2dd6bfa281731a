"""Fine-tuning methods on tiny T5 and BART: what trains, what is added, saving, and composing with RepCali."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from repcali import RepCaliConfig, RepCaliError, attach_repcali, grid
from repcali.calibration import find_block
from repcali.config import PROJECT_ROOT, MethodName
from repcali.methods import (
    BACKBONE_DIR,
    METHOD_CONFIG_NAME,
    METHOD_WEIGHTS_NAME,
    METHODS,
    apply_method,
    check_combination,
    method_named,
    method_of,
    unwrap,
)
from repcali.modeling import count_parameters, load_model, parameter_report, save_model

FAMILIES = ("t5", "bart")
CALIB = pytest.mark.parametrize("calib", [False, True], ids=["calib-off", "calib-on"])
# Small settings, so that every method moves its weights within a few steps of a d_model-32 model.
OPTIONS = {"lora": {"r": 2}, "prefix": {"num_virtual_tokens": 3}, "prompt": {"num_virtual_tokens": 3}}
OPTIONS["adapter"] = {"bottleneck": 4}
# What each method is meant to train, by parameter name (the RepCali block is added when calib=on).
INTENDED = {
    "full": lambda name: True,
    "frozen": lambda name: False,
    "lora": lambda name: ".lora_A." in name or ".lora_B." in name,
    "prefix": lambda name: name.startswith("prompt_encoder."),
    "prompt": lambda name: name.startswith("prompt_encoder."),
    "ia3": lambda name: ".ia3_l." in name,
    "adapter": lambda name: ".bottleneck_adapter." in name,
    "bitfit": lambda name: name.endswith(".bias"),
}
TEXTS = ["They propose a new method for parsing.", "Existing systems fail on long documents with many entities."]


def build(tiny_dirs, family: str, method: str, calib: bool, calib_train: str = "full"):
    torch.manual_seed(0)
    model = apply_method(AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family]), method, OPTIONS.get(method))
    if calib:
        attach_repcali(unwrap(model), RepCaliConfig(train=calib_train))
    return model


def inputs(tiny_dirs, family: str):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs[family])
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    labels = tokenizer(text_target=["A method.", "Systems fail."], padding=True, return_tensors="pt")["input_ids"]
    return tokenizer, batch, labels


def train_steps(model, batch, labels, steps: int = 3) -> None:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        return
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    model.train()
    for _ in range(steps):  # LoRA's A and the adapter's down move from the second step (B, up start at zero)
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    model.eval()


@CALIB
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_training_moves_exactly_the_intended_weights_and_saving_keeps_just_those(
    tiny_dirs, tmp_path, family, method, calib
):
    model = build(tiny_dirs, family, method, calib)
    tokenizer, batch, labels = inputs(tiny_dirs, family)
    names = [name for name, _ in model.named_parameters()]
    intended = {n for n in names if INTENDED[method](n) or (calib and "repcali." in n)}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == intended and (trainable or (method == "frozen" and not calib))
    assert (find_block(model) is not None) == calib
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_steps(model, batch, labels)
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert changed == trainable  # every trained weight moved, every other one is bit-identical

    block = find_block(model)
    method_trained = count_parameters(model, trainable_only=True) - (count_parameters(block) if block else 0)
    save_model(model, tokenizer, tmp_path, base_model=tiny_dirs[family])
    files = {path.name for path in tmp_path.iterdir()}
    if method == "full":
        assert "model.safetensors" in files and METHOD_CONFIG_NAME not in files
    else:
        assert "model.safetensors" not in files and BACKBONE_DIR not in files  # the backbone is not copied
        weights = tmp_path / ("adapter_model.safetensors" if "adapter_config.json" in files else METHOD_WEIGHTS_NAME)
        saved = sum(t.numel() for t in load_file(weights).values()) if weights.is_file() else 0
        assert saved == method_trained
        assert json.loads((tmp_path / METHOD_CONFIG_NAME).read_text())["base_model"] == tiny_dirs[family]
    assert ("repcali.safetensors" in files) == calib

    reloaded = load_model(tmp_path)
    assert method_of(reloaded)["name"] == method and (find_block(reloaded) is not None) == calib
    with torch.no_grad():
        assert torch.equal(reloaded(**batch, labels=labels).logits, model(**batch, labels=labels).logits)
        if method in ("prefix", "prompt"):  # PEFT's own generate paths
            settings = dict(num_beams=2, max_new_tokens=5, min_new_tokens=5, do_sample=False)
            assert torch.equal(reloaded.generate(**batch, **settings), model.generate(**batch, **settings))


def shape(config) -> dict[str, int]:
    """The sizes a hand count needs, for T5 or BART."""
    if config.model_type == "t5":
        inner, ff, enc, dec = config.num_heads * config.d_kv, config.d_ff, config.num_layers, config.num_decoder_layers
    else:
        inner, ff, enc, dec = config.d_model, config.encoder_ffn_dim, config.encoder_layers, config.decoder_layers
    attentions, blocks = enc + 2 * dec, enc + dec  # decoder blocks have self- and cross-attention
    return dict(d=config.d_model, inner=inner, ff=ff, dec=dec, attentions=attentions, blocks=blocks)


def hand_count(family: str, method: str, config) -> tuple[int, int]:
    """``(added, trainable)`` of ``method`` with ``OPTIONS``, counted from the config by hand."""
    s = shape(config)
    d, inner, attentions, blocks = s["d"], s["inner"], s["attentions"], s["blocks"]
    if method == "full":
        return 0, None  # trainable: the whole backbone
    if method == "frozen":
        return 0, 0
    if method == "lora":  # r * (d_in + d_out) for q and v of every attention
        added = 2 * attentions * OPTIONS["lora"]["r"] * (d + inner)
    elif method == "prefix":  # a key and a value prefix per decoder layer
        added = OPTIONS["prefix"]["num_virtual_tokens"] * 2 * s["dec"] * inner
    elif method == "prompt":
        added = OPTIONS["prompt"]["num_virtual_tokens"] * d
    elif method == "ia3":  # keys and values (T5: k, v; BART: q_proj, v_proj) scaled per output, FFN per input
        added = 2 * attentions * inner + blocks * s["ff"]
    elif method == "adapter":  # after self-attention and feed-forward: down (d*b + b) and up (b*d + d)
        b = OPTIONS["adapter"]["bottleneck"]
        added = 2 * blocks * (2 * d * b + b + d)
    elif method == "bitfit" and family == "t5":  # T5 has no bias: one per linear layer is added
        added = attentions * (3 * inner + d) + blocks * (s["ff"] * (2 if config.is_gated_act else 1) + d)
        added += config.vocab_size  # lm_head
    else:  # BART: only lm_head lacks a bias; all biases train
        added = config.vocab_size
        layer_norms = 2 * (blocks - s["dec"]) + 3 * s["dec"] + 2  # + layernorm_embedding in encoder and decoder
        return added, added + 4 * d * attentions + blocks * (s["ff"] + d) + d * layer_norms
    return added, added


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_counts_match_a_hand_count(tiny_dirs, family, method):
    backbone = AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family])
    backbone_total = count_parameters(backbone)
    model = apply_method(backbone, method, OPTIONS.get(method))
    added, trainable = hand_count(family, method, unwrap(model).config)
    report = parameter_report(model, backbone_total)
    assert report["added"] == added and report["repcali"] == 0
    assert report["trainable"] == (backbone_total if trainable is None else trainable)
    assert report["added_pct"] == pytest.approx(100 * added / backbone_total)

    rows = unwrap(model).config.max_position_embeddings if family == "bart" else 512
    attach_repcali(unwrap(model))
    with_block = parameter_report(model, backbone_total)
    assert with_block["repcali"] == rows * shape(unwrap(model).config)["d"] + 2 * shape(unwrap(model).config)["d"]
    assert with_block["added"] == added + with_block["repcali"]


@pytest.mark.parametrize("method", ["lora", "ia3", "adapter", "bitfit"])
@pytest.mark.parametrize("family", FAMILIES)
def test_methods_that_start_as_the_identity_leave_outputs_unchanged(tiny_dirs, family, method):
    _, batch, labels = inputs(tiny_dirs, family)
    vanilla = AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family]).eval()
    model = build(tiny_dirs, family, method, calib=False).eval()
    with torch.no_grad():
        expected, got = vanilla(**batch, labels=labels).logits, model(**batch, labels=labels).logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize("method", ["frozen", "lora", "prompt", "adapter", "bitfit"])
def test_without_a_base_model_the_frozen_backbone_is_saved_beside(tiny_dirs, tmp_path, method):
    model = build(tiny_dirs, "t5", method, calib=True)
    tokenizer, batch, labels = inputs(tiny_dirs, "t5")
    train_steps(model, batch, labels)
    save_model(model, tokenizer, tmp_path)  # e.g. init=scratch: no checkpoint to reload the backbone from
    vanilla = AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs["t5"]).state_dict()
    backbone = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / BACKBONE_DIR).state_dict()
    assert set(backbone) == set(vanilla)
    changed = {k for k in vanilla if not torch.equal(vanilla[k], backbone[k])}
    assert not changed, f"the saved backbone must be the untrained one: {sorted(changed)[:3]}"
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path)(**batch, labels=labels).logits, model(**batch, labels=labels).logits)


@CALIB
@pytest.mark.parametrize("method", ["prefix", "prompt"])  # PEFT's own generate paths; the others only add hooks
@pytest.mark.parametrize("family", FAMILIES)
def test_generation_scores_what_the_trained_forward_pass_computes(tiny_dirs, family, method, calib):
    """Greedy decoding step by step (with its cache) equals one teacher-forced forward pass over its output."""
    model = build(tiny_dirs, family, method, calib)
    _, batch, labels = inputs(tiny_dirs, family)
    train_steps(model, batch, labels)  # non-trivial method weights (prefixes, adapters, ...)
    with torch.no_grad():
        settings = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
        generated = model.generate(**batch, **settings, output_logits=True, return_dict_in_generate=True)
        forward = model(**batch, decoder_input_ids=generated.sequences[:, :-1]).logits
    torch.testing.assert_close(torch.stack(generated.logits, dim=1), forward, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "prefix", "prompt", "ia3"])
def test_repcali_calibrates_once_per_generate_under_peft(tiny_dirs, method):
    model = build(tiny_dirs, "t5", method, calib=True)
    _, batch, _ = inputs(tiny_dirs, "t5")
    calls = []
    find_block(model).register_forward_hook(lambda module, args, output: calls.append(output.shape))
    model.generate(**batch, num_beams=3, max_new_tokens=4, do_sample=False)
    assert len(calls) == 1 and calls[0][0] == len(TEXTS)


def test_calib_train_frozen_composes_only_with_full_and_frozen(tiny_dirs):
    check_combination("full", calib_enabled=True, calib_train="frozen")
    check_combination("frozen", calib_enabled=True, calib_train="frozen")
    check_combination("frozen", calib_enabled=False, calib_train="full")  # evaluates the untrained backbone
    for method in set(METHODS) - {"full", "frozen"}:
        check_combination(method, calib_enabled=True, calib_train="full")
        check_combination(method, calib_enabled=False, calib_train="frozen")  # calib.* is unused without the block
        with pytest.raises(RepCaliError, match="calib.train=frozen trains only the RepCali block.*Fix: "):
            check_combination(method, calib_enabled=True, calib_train="frozen")
    with pytest.raises(RepCaliError, match="method='qlora' is unknown.*Fix: "):
        check_combination("qlora", calib_enabled=False, calib_train="full")

    def trainable(model):
        return {name for name, p in model.named_parameters() if p.requires_grad}

    block_only = build(tiny_dirs, "t5", "full", calib=True, calib_train="frozen")
    assert trainable(block_only) == trainable(build(tiny_dirs, "t5", "frozen", calib=True))
    assert trainable(block_only) == {f"repcali.{name}" for name, _ in find_block(block_only).named_parameters()}


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("bitfit", {"r": 8}, "method.options.r is not an option of method=bitfit. Fix: remove the method.options"),
        (
            "lora",
            {"rank": 8},
            "method.options.rank is not an option of method=lora. Fix: use method.options.r, or fields of "
            "peft.LoraConfig",
        ),
        (
            "adapter",
            {"size": 8},
            "method.options.size is not an option of method=adapter. Fix: use method.options.bot",
        ),
        ("adapter", {"bottleneck": 0}, "method=adapter: bottleneck=0 must be at least 1. Fix: "),
        ("adapter", {"activation": "relux"}, "method=adapter: activation='relux' is not one of .*Fix: "),
    ],
)
def test_bad_method_options_fail_before_any_model_loads(tiny_dirs, method, options, message):
    with pytest.raises(RepCaliError, match=message):
        method_named(method).settings(options)  # what the run checks before it starts
    with pytest.raises(RepCaliError, match=message):
        apply_method(AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs["t5"]), method, options)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("lora", {"target_modules": ["nope"]}, "method=lora: .*nope.*Fix: "),
        ("adapter", {"targets": ["nope"]}, "found no sublayer named \\['nope'\\].*Fix: set method.options.targets"),
    ],
)
def test_options_that_do_not_fit_the_backbone_fail_with_a_fix(tiny_dirs, method, options, message):
    method_named(method).settings(options)  # valid in themselves
    with pytest.raises(RepCaliError, match=message):
        apply_method(AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs["t5"]), method, options)


def test_every_method_is_registered_with_a_config_and_every_config_applies(tiny_dirs, compose_train):
    configs = {path.stem for path in (PROJECT_ROOT / "conf" / "method").glob("*.yaml")}
    assert configs == set(METHODS) == set(MethodName)
    for name in METHODS:
        cfg = compose_train(f"method={name}")
        model = apply_method(AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs["t5"]), name, cfg.method.options)
        assert method_of(model)["name"] == cfg.method.name == name
        assert cfg.trainer.learning_rate == (cfg.method.learning_rate or cfg.model.learning_rate)


GLUE = ("sst2", "rte", "mnli", "cola")


def test_glue_comparison_sweeps_every_registered_method_and_every_point_can_train():
    """The grid's points as train.py composes them (the composer equals Hydra's compose: test_sweeps.py)."""
    points = grid.points("glue_comparison")
    identities = [point.identity for point in points]
    assert {(p.experiment, p.model) for p in identities} == {("glue_comparison", "t5_base")}
    expected = [(task, method, calib) for task in GLUE for method in METHODS for calib in ("off", "on")]
    assert sorted((p.task, p.method, p.calib, p.seed) for p in identities) == sorted(
        point + (seed,) for point in expected for seed in (1, 2, 3)
    )
    for point in points:
        method, calib = point.config["method"], point.config["calib"]
        check_combination(method["name"], calib["enabled"], calib["train"])


def test_weights_saved_for_other_options_fail_to_load_with_a_fix(tiny_dirs, tmp_path):
    model = build(tiny_dirs, "t5", "adapter", calib=False)
    save_model(model, inputs(tiny_dirs, "t5")[0], tmp_path, base_model=tiny_dirs["t5"])
    spec = json.loads((tmp_path / METHOD_CONFIG_NAME).read_text())
    spec["options"]["targets"] = ["SelfAttention"]  # fewer adapters than were saved
    (tmp_path / METHOD_CONFIG_NAME).write_text(json.dumps(spec))
    with pytest.raises(RepCaliError, match="do not match method=adapter.*Fix: "):
        load_model(tmp_path)


def test_a_method_reloads_its_backbone_in_the_dtype_it_trained_in(tiny_dirs, tmp_path):
    """facebook/bart-large stores float16; a LoRA run trains it in float32 (model.dtype) and must reload so."""
    half = tmp_path / "half"
    AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs["t5"], dtype=torch.float16).save_pretrained(half)
    tokenizer, batch, labels = inputs(tiny_dirs, "t5")
    torch.manual_seed(0)
    model = apply_method(AutoModelForSeq2SeqLM.from_pretrained(half, dtype=torch.float32), "lora", OPTIONS["lora"])
    train_steps(model, batch, labels)
    save_model(model, tokenizer, tmp_path / "run", base_model=str(half))
    reloaded = load_model(tmp_path / "run")
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}
    with torch.no_grad():
        assert torch.equal(reloaded(**batch, labels=labels).logits, model(**batch, labels=labels).logits)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_with_repcali_trains_and_generates_on_cuda_in_bf16(tiny_dirs, family, method):
    """Added weights land on the model's device and dtype; generation agrees with the forward pass there."""
    torch.manual_seed(0)
    backbone = AutoModelForSeq2SeqLM.from_pretrained(tiny_dirs[family]).cuda().bfloat16()
    model = apply_method(backbone, method, OPTIONS.get(method))
    attach_repcali(unwrap(model))
    _, batch, labels = inputs(tiny_dirs, family)
    batch, labels = {k: v.cuda() for k, v in batch.items()}, labels.cuda()
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_steps(model, batch, labels)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {name for name, p in model.named_parameters() if not torch.equal(before[name], p)} == trainable
    with torch.no_grad():
        settings = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
        generated = model.generate(**batch, **settings, output_logits=True, return_dict_in_generate=True)
        forward = model(**batch, decoder_input_ids=generated.sequences[:, :-1]).logits
    torch.testing.assert_close(torch.stack(generated.logits, dim=1).float(), forward.float(), rtol=0, atol=0.1)
