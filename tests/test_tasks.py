"""Every task on its fixture (the hub dataset's schema): loader, preprocessing, multi-reference grouping,
and the metrics against known values; one non-default task end to end through ``train.py`` (in this process)."""

from __future__ import annotations

import importlib.machinery
import json
import math
import sys
import types
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU
from transformers import AutoTokenizer

from repcali import RepCaliError
from repcali.data import build_task_data
from repcali.formatters import anlg, classification, csds, get_formatter, join_cjk, multiwoz, webnlg
from repcali.metrics import by_category, coco_unavailable, compute, mwzeval_input
from repcali.results import read_results
from repcali.runs import PREDICTIONS_NAME, write_predictions
from tests import cli
from tests.grid import FIXTURES, ROOT, TASK_FILES, data_overrides

# task -> (training pairs, evaluation examples, most references of one evaluation example)
EXPECTED = {
    "xsum": (16, 8, 1),
    "cnn_dailymail": (4, 2, 1),
    "webnlg": (4, 2, 2),  # 3 rows with 4 lexicalisations; a test row with 2; of the 4 test rows, the 2 not in
    # the set with references (task.keep_rows) are dropped
    "common_gen": (4, 2, 2),  # 3 validation rows, 2 of one concept set
    "anlg": (4, 2, 2),  # 3 validation rows, 2 of one observation pair
    "multiwoz": (3, 1, 1),  # one example per system turn
    "csds": (3, 1, 1),
    "lcsts": (4, 2, 1),
    "sst2": (4, 2, 1),
    "rte": (4, 2, 1),
    "mnli": (4, 3, 1),
    "cola": (4, 2, 1),
}


def rows(task: str, split: str) -> list[dict]:
    path = FIXTURES / TASK_FILES[task][split]
    return json.loads(path.read_text()) if path.suffix == ".json" else [json.loads(line) for line in path.open()]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-t5")


@pytest.mark.parametrize("task", list(EXPECTED))
def test_task_loads_its_fixture_and_preprocesses(compose_train, tokenizer, task):
    cfg = compose_train(f"task={task}", *data_overrides(task))
    data = build_task_data(cfg.task, tokenizer, use_prefix=True, max_positions=512)
    n_train, n_eval, most_references = EXPECTED[task]
    assert (len(data.train), len(data.eval), len(data.eval_ids)) == (n_train, n_eval, n_eval)
    assert max(len(refs) for refs in data.eval_references) == most_references
    assert all(ref for refs in data.eval_references for ref in refs), "no empty reference"
    assert len(set(data.eval_ids)) == n_eval
    source = tokenizer.decode(data.train[0]["input_ids"], skip_special_tokens=True)
    assert source.startswith(cfg.task.prefix.strip())


def test_webnlg_linearises_triples_and_keeps_every_lexicalisation():
    [record] = webnlg(rows("webnlg", "test")[0], {})
    assert record["triples"] == (
        "<H> Buzz Aldrin <R> birth date <T> 1930-01-20 <H> Buzz Aldrin <R> birth place <T> Glen Ridge, New Jersey"
    )
    assert len(record["references"]) == 2 and record["references"][0].startswith("Buzz Aldrin was born")


def test_csds_writes_speaker_turns_without_word_segmentation_spaces():
    [record] = csds(rows("csds", "train")[0], {})
    assert record["dialogue"].splitlines() == [
        "用户：我的快递什么时候到？",
        "客服：您好，请提供一下订单号。",
        "用户：订单号是12345。",
        "客服：您的快递明天送达。",
    ]
    assert record["FinalSumm"] == "用户询问快递什么时候到。客服回答明天送达。"
    assert record["UserSumm"] == "用户询问快递什么时候到。"


def test_multiwoz_yields_one_delexicalised_system_turn_with_context_and_belief_state():
    first, second = multiwoz(rows("multiwoz", "train")[0], {})
    assert first == {
        "id": "PMUL0001.json#1",
        "context": "user: i need a cheap restaurant in the centre.",
        "belief": "[restaurant] area centre pricerange cheap",
        "response": "[name] is a cheap [food] place in the centre.",
    }
    assert second["context"] == (
        "user: i need a cheap restaurant in the centre. system: [name] is a cheap [food] place in the centre. "
        "user: great, what is the phone number?"
    )
    assert second["response"] == "The phone number is [phone]." and second["id"] == "PMUL0001.json#3"


def test_anlg_and_glue_rows_with_bad_labels_fail_with_the_fix():
    row = rows("anlg", "train")[0]
    assert anlg(row, {})[0]["hypothesis"] == row["hypothesis_2"]
    with pytest.raises(RepCaliError, match="plausible hypothesis"):
        anlg({**row, "label": 0}, {})
    task = {"name": "sst2", "labels": ["negative", "positive"]}
    assert classification({"sentence": "x", "label": 1}, task)[0]["label_text"] == "positive"
    with pytest.raises(RepCaliError, match="task.eval_split=validation"):
        classification({"sentence": "x", "label": -1}, task)
    with pytest.raises(RepCaliError, match="Unknown task.formatter 'graph'"):
        get_formatter("graph")


def test_matthews_correlation_on_a_known_confusion_matrix():
    gold = ["acceptable"] * 3 + ["unacceptable"] * 3
    predicted = ["acceptable", "acceptable", "unacceptable", "unacceptable", "unacceptable", "acceptable"]
    scores = compute(["mcc", "accuracy"], predicted, gold)
    # TP = 2, TN = 2, FP = 1, FN = 1: MCC = (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3
    assert scores.corpus["mcc"] == pytest.approx(100 / 3)
    assert scores.corpus["accuracy"] == pytest.approx(100 * 4 / 6)
    perfect = compute(["mcc"], gold, gold).corpus["mcc"]
    garbled = compute(["mcc"], ["acceptable", "maybe", *gold[2:]], gold)
    assert perfect == pytest.approx(100) and garbled.corpus["mcc"] < perfect
    assert garbled.settings["mcc"]["n_unparseable"] == 1


def test_accuracy_matches_label_names_loosely_and_counts_anything_else_wrong():
    scores = compute(["accuracy"], [" Positive ", "positive.", "negative"], ["positive", "positive", "negative"])
    assert scores.per_example["accuracy"] == [100.0, 0.0, 100.0]


def test_multi_reference_bleu_rouge_and_chrf_use_every_reference():
    predictions = ["a man throws a frisbee to his dog", "the horse eats hay"]
    references = [["the dog catches a ball", "a man throws a frisbee to his dog"], ["the horse eats hay"]]
    scores = compute(["bleu", "rouge", "chrf"], predictions, references)
    expected = BLEU().corpus_score(predictions, [[r[0] for r in references], [references[0][1], None]]).score
    assert scores.corpus["bleu"] == pytest.approx(expected) == pytest.approx(100.0)
    assert scores.corpus["rouge1"] == pytest.approx(100.0)  # the best reference per example
    assert scores.corpus["chrf"] == pytest.approx(100.0)
    assert scores.settings["bleu"]["max_references"] == 2
    single = compute(["bleu"], predictions[:1], [references[0][:1]]).corpus["bleu"]
    assert single < 100.0


def test_the_primary_metric_is_scored_on_each_category_apart_and_written_with_each_prediction(tmp_path):
    predictions = ["the horse eats hay", "dogs run", "the horse eats hay in the barn"]
    references = [["the horse eats hay"], ["a cat sleeps"], ["the horse eats hay"]]
    categories = ["Animal", "Pet", "Animal"]
    found = by_category(["bleu", "rouge"], "rouge1", predictions, references, categories)
    animal = compute(["rouge"], predictions[::2], references[::2]).corpus["rouge1"]
    assert found == {"Animal": {"rouge1": animal, "n_examples": 2}, "Pet": {"rouge1": 0.0, "n_examples": 1}}
    assert 0 < animal < 100
    write_predictions(tmp_path, ["a", "b", "c"], predictions, references, {}, categories)
    lines = [json.loads(line) for line in (tmp_path / PREDICTIONS_NAME).read_text().splitlines()]
    assert [line["category"] for line in lines] == categories
    write_predictions(tmp_path, ["a", "b", "c"], predictions, references, {})  # a task without categories
    assert all("category" not in json.loads(line) for line in (tmp_path / PREDICTIONS_NAME).read_text().splitlines())


def test_join_cjk_drops_only_spaces_next_to_chinese_characters():
    assert join_cjk("订单号 是 12345 。 ok then") == "订单号是12345。ok then"


def test_chinese_bleu_and_rouge_are_non_zero_on_chinese_text():
    scores = compute(["rouge", "bleu"], ["全市将新建二十所学校"], ["全市将新建二十所小学"], language="zh")
    assert 0 < scores.corpus["rouge1"] < 100 and 0 < scores.corpus["bleu"] < 100
    assert "tok:zh" in scores.settings["bleu"]["signature"]


@pytest.mark.slow  # two Java programs
@pytest.mark.skipif(coco_unavailable("en") is not None, reason=f"METEOR/CIDEr unavailable: {coco_unavailable('en')}")
def test_meteor_and_cider_through_pycocoevalcap():
    references = [["a man throws a frisbee to his dog"], ["the horse eats hay in the barn"]] * 2
    predictions = [references[0][0], references[1][0], "a cat sleeps", "rain falls"]  # two exact, two unrelated
    scores = compute(["meteor", "cider"], predictions, references)  # one call: each Java program starts once
    meteor, cider = scores.per_example["meteor"], scores.per_example["cider"]
    assert min(meteor[:2]) > 90 > 10 > max(meteor[2:])
    assert min(cider[:2]) > max(cider[2:]) >= 0
    assert 0 < scores.corpus["meteor"] < 100  # METEOR's own corpus aggregate (from pooled statistics, not a mean)
    assert "PTBTokenizer" in scores.settings["cider"]["tokenizer"]


def test_meteor_and_cider_are_skipped_with_the_reason_where_they_cannot_run():
    scores = compute(["meteor", "cider", "rouge"], ["今天"], ["今天"], language="zh")
    assert "meteor" not in scores.corpus and "rouge1" in scores.corpus
    assert "English only" in scores.settings["meteor"]["skipped"]


def test_multiwoz_without_the_standard_evaluator_reports_bleu_and_says_why():
    scores = compute(["multiwoz"], ["[name] is in the [area] ."], ["[name] is in the [area] ."], ids=["SNG01.json#1"])
    assert scores.corpus == {"bleu": pytest.approx(100.0)}
    assert "mwzeval is not installed" in scores.settings["multiwoz"]["skipped"]


def test_multiwoz_with_the_standard_evaluator_combines_its_scores(monkeypatch):
    seen = {}

    class Evaluator:
        def __init__(self, bleu, success, richness):
            assert bleu and success and not richness

        def evaluate(self, predictions):
            seen.update(predictions)
            return {"bleu": {"mwz22": 18.0}, "success": {"inform": {"total": 84.0}, "success": {"total": 74.0}}}

    package = types.ModuleType("mwzeval")
    package.__spec__ = importlib.machinery.ModuleSpec("mwzeval", None)
    metrics = types.ModuleType("mwzeval.metrics")
    metrics.Evaluator = Evaluator
    monkeypatch.setitem(sys.modules, "mwzeval", package)
    monkeypatch.setitem(sys.modules, "mwzeval.metrics", metrics)
    ids = ["PMUL0001.json#3", "SNG02.json#1", "PMUL0001.json#1"]
    scores = compute(["multiwoz"], ["b", "c", "a"], ["x", "y", "z"], ids=ids)
    assert scores.corpus == {"inform": 84.0, "success": 74.0, "bleu": 18.0, "combined": pytest.approx(97.0)}
    assert seen == {"pmul0001": [{"response": "a"}, {"response": "b"}], "sng02": [{"response": "c"}]}
    assert mwzeval_input(ids, ["b", "c", "a"]) == seen


@pytest.mark.slow
def test_a_chinese_task_runs_end_to_end_through_train_py(tiny_family, tmp_path):
    """train.py on LCSTS from local files with the Chinese BART family's tiny variant: the user's command."""
    process = cli.here(
        "train.py",
        "model=bart_base_chinese",
        f"model.name_or_path={tiny_family('bart_chinese')}",
        "task=lcsts",
        *data_overrides("lcsts"),
        "calib=on",
        "trainer.max_steps=3",
        "trainer.eval_strategy=no",  # the fixture has no validation file; model selection: test_selection.py
        "task.generation.max_new_tokens=8",
        f"runs_dir={tmp_path}",
    )
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = process.stdout.strip().splitlines()[-1].split("Run dir: ")[1]
    results = read_results(run_dir)
    assert results.status == "completed" and results.task == "lcsts" and results.params["added"] > 0
    assert all(math.isfinite(results.metrics[name]) for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    assert results.metric_settings["rouge"]["tokenizer"] == "characters"
    predictions = [json.loads(line) for line in Path(run_dir, "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2
    assert all(join_cjk(p["prediction"]) == p["prediction"] for p in predictions)  # no space next to 字
