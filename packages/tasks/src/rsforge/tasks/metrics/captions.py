"""Caption metrics as coco-caption computes them, through pycocoevalcap.

BLEU-1..4, METEOR, ROUGE-L and CIDEr (and SPICE on request): predictions and references go through
pycocoevalcap's `PTBTokenizer` (lower case, punctuation removed), then through its scorers, as
`COCOEvalCap.evaluate` does. Differences, none of which changes a score:

- both sides are tokenized in one Java run instead of two, and METEOR's JVM starts meanwhile;
- line breaks inside a caption become spaces first: the Java tokenizer reads one caption per line,
  so a stray "\\r" would otherwise shift every later caption onto the wrong id;
- per-group scores reuse that one tokenization and one METEOR process.

BLEU, METEOR and CIDEr are corpus-level, so a group is scored on its own captions only (CIDEr's
document frequencies come from the group's references), exactly as if it were evaluated alone.
ROUGE-L and SPICE are means of per-caption scores.

Java must be on PATH. SPICE also needs the Stanford CoreNLP 3.6.0 jars in pycocoevalcap's
`spice/lib` folder; pycocoevalcap would download them on first use, this module never does.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import spice as coco_spice
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

log = logging.getLogger(__name__)

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
# Characters on which the Java PTB tokenizer starts a new line (checked one by one).
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\u2028\u2029]")
_SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def caption_metrics(
    predictions: Mapping[str, str], references: Mapping[str, list[str]], *, spice: bool = False
) -> dict[str, float]:
    """Score one caption per id against that id's references (at least one each; the ids of both
    mappings must match). An empty prediction is allowed and scored as such.

    Returns {"BLEU-1", ..., "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"} and, when `spice` is set and
    SPICE can run, "SPICE". If it cannot, one warning says why and how to enable it, and the key is
    left out.
    """
    _validate(predictions, references)
    return _evaluate(predictions, references, {"all": list(predictions)}, spice)["all"]


def caption_metrics_by_group(
    predictions: Mapping[str, str],
    references: Mapping[str, list[str]],
    groups: Mapping[str, str],
    *,
    spice: bool = False,
) -> dict[str, dict[str, float]]:
    """`caption_metrics` over all ids ("all") and over each group of ids (e.g. changed / unchanged
    pairs), `groups` giving an id's group; ids it leaves out count in "all" only. Each group is scored
    as a corpus of its own."""
    _validate(predictions, references)
    unknown = [i for i in groups if i not in predictions]
    if unknown:
        raise ValueError(f"caption groups: {len(unknown)} grouped ids have no prediction, e.g. {unknown[:3]}")
    if "all" in groups.values():
        raise ValueError("caption groups: 'all' is reserved for the whole split, rename that group")
    subsets = {"all": list(predictions)}
    for name in sorted(set(groups.values())):
        subsets[name] = [i for i in predictions if groups.get(i) == name]
    return _evaluate(predictions, references, subsets, spice)


def _validate(predictions: Mapping[str, str], references: Mapping[str, list[str]]) -> None:
    if not predictions:
        raise ValueError("caption metrics: no predictions")
    if set(predictions) != set(references):
        missing = [i for i in predictions if i not in references]
        extra = [i for i in references if i not in predictions]
        raise ValueError(
            f"caption metrics: ids differ: {len(missing)} predictions have no references "
            f"(e.g. {missing[:3]}), {len(extra)} references have no prediction (e.g. {extra[:3]})"
        )
    for i, prediction in predictions.items():
        if not isinstance(prediction, str):
            kind = type(prediction).__name__
            raise TypeError(f"caption metrics: prediction {i!r} must be a string, got {kind}")
    for i, refs in references.items():
        if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
            raise TypeError(f"caption metrics: references of {i!r} must be a list of strings")
        if not refs:
            raise ValueError(f"caption metrics: id {i!r} has no reference")


def _evaluate(
    predictions: Mapping[str, str],
    references: Mapping[str, list[str]],
    subsets: dict[str, list[str]],
    spice: bool,
) -> dict[str, dict[str, float]]:
    if shutil.which("java") is None:
        raise RuntimeError("caption metrics need Java on PATH: the PTB tokenizer and METEOR run on it")
    meteor = Meteor()  # starts its JVM now: it loads its paraphrase table while the tokenizer runs
    try:
        res, gts = _tokenize(predictions, references)
        rouge = Rouge()
        rouge_of = {i: rouge.calc_score(res[i], gts[i]) for i in res}
        spice_of = _spice(gts, res) if spice else None
        scores = {}
        for name, ids in subsets.items():
            sub_gts, sub_res = {i: gts[i] for i in ids}, {i: res[i] for i in ids}
            bleu, _ = Bleu(4).compute_score(sub_gts, sub_res, verbose=0)
            meteor_score, _ = meteor.compute_score(sub_gts, sub_res)
            cider, _ = Cider().compute_score(sub_gts, sub_res)
            values = [*bleu, meteor_score, np.mean([rouge_of[i] for i in ids]), cider]
            scores[name] = {metric: float(v) for metric, v in zip(METRICS, values, strict=True)}
            if spice_of is not None:
                scores[name]["SPICE"] = float(np.mean([spice_of[i] for i in ids]))
        return scores
    finally:
        meteor.meteor_p.stdin.close()
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()


def _tokenize(
    predictions: Mapping[str, str], references: Mapping[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """PTB-tokenize both sides in one run: ({id: [prediction]}, {id: references})."""
    captions = {("pred", i): [_one_line(p)] for i, p in predictions.items()}
    captions |= {("ref", i): [_one_line(r) for r in refs] for i, refs in references.items()}
    tokenized = PTBTokenizer().tokenize(captions)
    if any(len(tokenized.get(key, ())) != len(value) for key, value in captions.items()):
        raise RuntimeError("PTB tokenizer returned a different number of captions than it was given")
    return {i: tokenized["pred", i] for i in predictions}, {i: tokenized["ref", i] for i in predictions}


def _one_line(caption: str) -> dict[str, str]:
    return {"caption": _LINE_BREAKS.sub(" ", caption)}


def _spice_lib() -> Path:
    return Path(coco_spice.__file__).parent / "lib"


def _spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> dict[str, float] | None:
    """Per-caption SPICE F-scores, or None (after one warning) when SPICE cannot run."""
    lib = _spice_lib()
    hint = (
        f"to enable it, put {' and '.join(_SPICE_JARS)} "
        f"(from Stanford's stanford-corenlp-full-2015-12-09.zip) in {lib}"
    )
    missing = [jar for jar in _SPICE_JARS if not (lib / jar).is_file()]
    if missing:
        # pycocoevalcap would start a 400 MB download here, which hangs or fails offline.
        log.warning("SPICE skipped: %s not found; %s", ", ".join(missing), hint)
        return None
    try:
        _, per_caption = coco_spice.Spice().compute_score(gts, res)
    except Exception as exc:  # a failed SPICE run (Java, memory, jars) must not cost the other metrics
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.warning("SPICE skipped: it failed (%s); %s", reason, hint)
        return None
    # Spice returns scores in sorted id order.
    return {i: s["All"]["f"] for i, s in zip(sorted(gts), per_caption, strict=True)}
