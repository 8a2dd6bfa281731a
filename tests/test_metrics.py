"""Metrics against hand-checked values; the settings that make them comparable are recorded."""

import pytest

from repcali.errors import RepCaliError
from repcali.metrics import compute, split_sentences


def test_rouge_on_a_hand_checked_pair():
    # reference tokens: the cat sat on the mat (6); prediction: the cat lay on the mat (6); 5 shared unigrams
    scores = compute(["rouge"], ["the cat lay on the mat"], ["the cat sat on the mat"])
    assert scores.corpus["rouge1"] == pytest.approx(100 * 5 / 6)
    assert scores.corpus["rouge2"] == pytest.approx(100 * 3 / 5)  # the cat / on the / the mat
    assert scores.corpus["rougeL"] == pytest.approx(100 * 5 / 6)
    assert scores.settings["rouge"]["use_stemmer"] is True


def test_rouge_stems_and_lsum_splits_sentences():
    stemmed = compute(["rouge"], ["They proposed models."], ["They propose a model."])
    assert stemmed.corpus["rouge1"] == pytest.approx(100 * 2 * (3 / 3 * 3 / 4) / (3 / 3 + 3 / 4))
    swapped = compute(["rouge"], ["The dog barked. The cat sat."], ["The cat sat. The dog barked."])
    assert swapped.corpus["rougeLsum"] == pytest.approx(100.0)  # LCS per sentence (union): order-free
    assert swapped.corpus["rougeL"] == pytest.approx(50.0)  # one LCS over the text: "the dog barked" / 6
    assert split_sentences("Dr. Smith left. He slept.", "en") == ["Dr. Smith left.", "He slept."]


def test_chinese_rouge_is_scored_on_characters():
    scores = compute(["rouge"], ["今天天气很好。"], ["今天天气不错。"], language="zh")
    # characters: 今 天 天 气 很 好 。 vs 今 天 天 气 不 错 。: 5 of 7 shared
    assert scores.corpus["rouge1"] == pytest.approx(100 * 5 / 7)
    assert scores.settings["rouge"]["tokenizer"] == "characters"


def test_bleu_is_sacrebleu_corpus_bleu_with_its_signature():
    scores = compute(["bleu"], ["the cat sat on the mat", "a dog"], ["the cat sat on the mat", "a dog barked"])
    from sacrebleu import corpus_bleu

    expected = corpus_bleu(["the cat sat on the mat", "a dog"], [["the cat sat on the mat", "a dog barked"]]).score
    assert scores.corpus["bleu"] == pytest.approx(expected)
    assert scores.per_example["bleu"][0] == pytest.approx(100.0)
    assert "tok:13a" in scores.settings["bleu"]["signature"]
    assert "tok:zh" in compute(["bleu"], ["你好"], ["你好"], language="zh").settings["bleu"]["signature"]


def test_unknown_metric_names_the_fix():
    with pytest.raises(RepCaliError, match="Fix: use some of"):
        compute(["meteorr"], ["a"], ["a"])
