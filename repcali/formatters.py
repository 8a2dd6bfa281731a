"""Named row formatters: structured dataset rows made into the text columns a task's templates use.

A formatter takes one row (its columns, in the hub dataset's schema) and the task config, and
returns the records the row yields: usually one (the row plus derived columns); a MultiWOZ
dialogue yields one per system turn. A record may carry ``references`` (several targets for one
input, e.g. WebNLG's lexicalisations) and ``id``. The task's ``source``/``target`` templates are
applied to each record afterwards, so a simple task needs no formatter (``template``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from repcali.errors import RepCaliError

Record = dict[str, Any]
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SPACE_NEXT_TO_CJK = re.compile(r"(?<=[\u2e80-\u9fff\uff00-\uffef])\s+|\s+(?=[\u2e80-\u9fff\uff00-\uffef])")
CSDS_SPEAKERS = {"Q": "用户", "A": "客服"}  # CSDS: Q = the customer, A = the agent
MULTIWOZ_CONTEXT_TURNS = 6  # the last 3 user/system exchanges, newest last


def join_cjk(text: str) -> str:
    """Drop spaces next to CJK characters: word-segmented CSDS text and BERT-style decoding add them."""
    return _SPACE_NEXT_TO_CJK.sub("", text).strip()


# BERT's tokenizer splits off every punctuation character and WordPiece decoding joins tokens with spaces,
# so "state-of-the-art (BLEU)" comes back as "state - of - the - art ( bleu )". Applied in order:
_WORDPIECE_SPACING = (
    (re.compile(r"(?<=\w) ?([-/_]) ?(?=\w)"), r"\1"),  # state - of - the - art, and / or, value _ name
    (re.compile(r"(?<=\w) ?' ?(s|t|d|m|re|ve|ll)\b"), r"'\1"),  # don ' t, it ' s, we ' ll
    (re.compile(r"(?<=s) '(?= )"), "'"),  # the models ' outputs
    (re.compile(r'" ([^"]*?) "'), r'"\1"'),  # " gold "
    (re.compile(r"([(\[{]) "), r"\1"),  # ( bleu
    (re.compile(r" ([)\]},.;:!?%])"), r"\1"),  # bleu ), 3 %, labels :
    (re.compile(r"(?<=\d)\. (?=\d)"), "."),  # 1. 5
    (re.compile(r"\b(\d{1,3}), (?=\d{3}\b)"), r"\1,"),  # 10, 000 (not "in 2019, 500 ...")
    (re.compile(r"(?<=\b[a-z])\. (?=[a-z]\.)"), "."),  # e. g.
)


def detokenize_wordpiece(text: str) -> str:
    """English text as a reader writes it, out of a BERT-vocabulary (WordPiece) decoding.

    BERT's pre-tokenizer cannot tell "state-of-the-art" from "state - of - the - art", so a hyphen,
    slash or contraction between two words is always joined (a dash between words is rare in the
    one-sentence summaries this serves). ROUGE is unaffected: rouge-score drops punctuation.
    """
    for pattern, replacement in _WORDPIECE_SPACING:
        text = pattern.sub(replacement, text)
    return text


def template(row: Record, task: Mapping) -> list[Record]:
    """No preprocessing: the templates read the row's own columns."""
    return [row]


def classification(row: Record, task: Mapping) -> list[Record]:
    """GLUE as text-to-text (T5): the target is the label's name, ``label_text``."""
    label, names = row["label"], task["labels"]
    if not 0 <= label < len(names):
        raise RepCaliError(
            f"Task {task['name']!r}: label {label} is not one of 0..{len(names) - 1} (GLUE test labels are hidden, "
            "-1). Fix: evaluate on the validation split (task.eval_split=validation) or give labelled data."
        )
    return [{**row, "label_text": names[label]}]


def _entity(text: str) -> str:
    return text.replace("_", " ").strip()


def webnlg(row: Record, task: Mapping) -> list[Record]:
    """Triples as ``<H> head <R> relation <T> tail`` (Ribeiro et al., 2021); every lexicalisation a reference.

    Entities lose their DBpedia underscores and camelCase relations are split ("birthDate" ->
    "birth date"). ``modified_triple_sets`` and ``lex`` are the hub schema of ``web_nlg``.
    """
    triples = row["modified_triple_sets"]["mtriple_set"][0]
    parts = []
    for triple in triples:
        head, relation, tail = (part.strip() for part in triple.split("|"))
        parts.append(f"<H> {_entity(head)} <R> {_CAMEL.sub(' ', relation).lower()} <T> {_entity(tail)}")
    texts = [text for text in row["lex"]["text"] if text]
    return [{**row, "triples": " ".join(parts), "references": texts}]


def common_gen(row: Record, task: Mapping) -> list[Record]:
    """The concept set as one space-separated string (``concepts``: a list of words in ``allenai/common_gen``)."""
    return [{**row, "concept_text": " ".join(row["concepts"])}]


def anlg(row: Record, task: Mapping) -> list[Record]:
    """αNLG from ``allenai/art``: the two observations in, the plausible hypothesis (``label`` 1 or 2) out."""
    label = row["label"]
    if label not in (1, 2):
        raise RepCaliError(
            f"αNLG row with label {label}; ART labels name the plausible hypothesis (1 or 2). "
            "Fix: data in the allenai/art schema (observation_1/2, hypothesis_1/2, label)."
        )
    return [{**row, "hypothesis": row[f"hypothesis_{label}"]}]


def csds(row: Record, task: Mapping) -> list[Record]:
    """CSDS: the dialogue as speaker turns ("用户：…" / "客服：…", one a line); summaries as one string each.

    CSDS ships word-segmented text; the spaces between Chinese words are removed.
    """
    turns = [
        f"{CSDS_SPEAKERS.get(turn['speaker'], turn['speaker'])}：{join_cjk(turn['utterance'])}"
        for turn in row["Dialogue"]
    ]
    summaries = {
        key: "".join(join_cjk(s) for s in row[key])
        for key in ("FinalSumm", "UserSumm", "AgentSumm")
        if isinstance(row.get(key), list)
    }
    return [{**row, **summaries, "dialogue": "\n".join(turns)}]


def _belief_state(frames: Mapping) -> str:
    """MultiWOZ 2.2 dialogue state of a user turn as ``[domain] slot value ...`` (MinTL's belief span)."""
    slots: dict[str, list[str]] = {}
    for state in frames["state"]:
        values = state["slots_values"]
        for name, value_list in zip(values["slots_values_name"], values["slots_values_list"], strict=True):
            domain, _, slot = name.partition("-")
            slots.setdefault(domain, []).append(f"{slot} {value_list[0]}")
    return " ".join(f"[{domain}] " + " ".join(sorted(pairs)) for domain, pairs in sorted(slots.items()))


def _delexicalise(utterance: str, spans: Mapping) -> str:
    """Replace the annotated value spans of a system turn by ``[slot]`` (MultiWOZ 2.2 span_info)."""
    placed = sorted(zip(spans["span_start"], spans["span_end"], spans["act_slot_name"], strict=True), reverse=True)
    end_of_next = len(utterance) + 1
    for start, end, slot in placed:
        if end <= end_of_next:  # skip overlapping annotations of the same text
            utterance = f"{utterance[:start]}[{slot}]{utterance[end:]}"
            end_of_next = start
    return utterance


def multiwoz(row: Record, task: Mapping) -> list[Record]:
    """One record per system turn: ``context`` (recent turns, system turns delexicalised), ``belief`` (the
    ground-truth state after the last user turn) and the delexicalised ``response`` to generate.

    This is MultiWOZ's context-to-response setting with oracle belief state; ids are
    ``<dialogue_id>#<turn_id>`` so the standard evaluator can regroup turns into dialogues.
    """
    turns = row["turns"]
    history: list[str] = []
    belief = ""
    records = []
    for i, utterance in enumerate(turns["utterance"]):
        if turns["speaker"][i] in (0, "USER"):
            belief = _belief_state(turns["frames"][i])
            history.append(f"user: {utterance}")
            continue
        response = _delexicalise(utterance, turns["dialogue_acts"][i]["span_info"])
        records.append(
            {
                "id": f"{row['dialogue_id']}#{turns['turn_id'][i]}",
                "context": " ".join(history[-MULTIWOZ_CONTEXT_TURNS:]),
                "belief": belief,
                "response": response,
            }
        )
        history.append(f"system: {response}")
    return records


FORMATTERS: dict[str, Callable[[Record, Mapping], list[Record]]] = {
    "template": template,
    "classification": classification,
    "webnlg": webnlg,
    "common_gen": common_gen,
    "anlg": anlg,
    "csds": csds,
    "multiwoz": multiwoz,
}


# Per formatter: (the row columns it reads, the record fields it adds for the templates). The columns a task
# needs are these plus its templates' other fields (repcali.data.required_columns); the hub-layout tests
# format each mirror's rows cut to exactly those columns, so a column read but not declared fails there.
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "template": ((), ()),
    "classification": (("label",), ("label_text",)),
    "webnlg": (("modified_triple_sets", "lex"), ("triples", "references")),
    "common_gen": (("concepts",), ("concept_text",)),
    "anlg": (("label", "hypothesis_1", "hypothesis_2"), ("hypothesis",)),
    "csds": (("Dialogue",), ("dialogue",)),
    "multiwoz": (("dialogue_id", "turns"), ("id", "context", "belief", "response")),
}


def get_formatter(name: str) -> Callable[[Record, Mapping], list[Record]]:
    if name not in FORMATTERS:
        raise RepCaliError(f"Unknown task.formatter {name!r}. Fix: use one of {sorted(FORMATTERS)}.")
    return FORMATTERS[name]
