"""The accuracy of a model's classification head (`classifier`) on the labelled samples of a split: its
argmax against each sample's `meta["label"]`, counted batch by batch as evaluation reads them; and the
trivial predictor to beat, the most frequent training label everywhere."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rsforge.core.batch import Batch
from rsforge.core.sample import META_CANDIDATES, META_LABEL, Sample

GROUP = "classifier"


class ClassifierAccuracy:
    """Counts for the model's first classification head; `metrics()` is `{"classifier": {"accuracy",
    "samples"}}`, or empty when the model has no such head or the data no labels."""

    def __init__(self, model) -> None:
        self.model = model
        heads = zip(model.heads, model.recipe.heads, strict=True)
        self.config = next((config for head, config in heads if not head.predicts_mask), None)
        self.correct = self.total = 0

    @property
    def wanted(self) -> bool:
        return self.config is not None

    def update(self, batch: Batch) -> None:
        if self.config is None or batch.labels is None:
            return
        valid = batch.labels >= 0
        classes = getattr(self.config, "classes", None)
        for sample_id, meta, labelled in zip(batch.ids, batch.meta, valid.tolist(), strict=True):
            # a label is an index into the sample's class list: another list would score other classes
            if labelled and classes is not None and list(meta.get(META_CANDIDATES) or ()) != classes:
                raise ValueError(f"sample {sample_id}: its classes {meta.get(META_CANDIDATES)} are not the "
                                 f"{self.config.name} head's classes {classes}, so its label means another class")
        predicted = self.model.class_logits(batch.images[valid]).argmax(-1).cpu()
        self.correct += int((predicted == batch.labels[valid]).sum())
        self.total += int(valid.sum())

    def metrics(self) -> dict[str, dict[str, float]]:
        if not self.total:
            return {}
        return {GROUP: {"accuracy": self.correct / self.total, "samples": self.total}}


def majority_label_accuracy(model, train: Sequence[Sample], samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    """`{"classifier": {"accuracy", "samples"}}` of the most frequent training label predicted for every
    labelled sample; empty when the model has no classification head or either split no labels."""
    if not ClassifierAccuracy(model).wanted:
        return {}
    counts = Counter(s.meta[META_LABEL] for s in train if META_LABEL in s.meta)
    labels = [s.meta[META_LABEL] for s in samples if META_LABEL in s.meta]
    if not counts or not labels:
        return {}
    majority = counts.most_common(1)[0][0]
    return {GROUP: {"accuracy": sum(label == majority for label in labels) / len(labels), "samples": len(labels)}}
