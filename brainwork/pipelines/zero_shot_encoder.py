"""Zero-shot labels from an encoder: an NLI checkpoint natively, or sentence-embedding similarity.

- NLI (a `*ForSequenceClassification` folder whose labels include "entailment"), as Hugging Face
  does it: every (text, hypothesis) pair of every label goes through the encoder in one batched
  call (the length-sorted batcher packs them), then the entailment logits are soft-maxed across
  labels (single label) or entailment vs contradiction per label (`multi_label`, or one label).
- Embeddings (a sentence-embedding model without a head, e.g. `all-minilm-l6-v2`): cosine
  between the text and each filled-in hypothesis, soft-maxed with a temperature (single label);
  with `multi_label` each label gets its cosine clipped to [0, 1] (a similarity, not a
  probability).
  `adapt=True` is transductive: the hypotheses only seed one prototype per label, which then
  moves to the mean of the inputs of this call that it wins, until no input changes label
  (k-means seeded by the labels). Still no labelled data, but a call's results then depend on
  its other inputs, so it is for a large batch from one domain: on the 2,225 BBC News articles
  it lifts accuracy from 0.85 to 0.96 (`benchmarks/bbc_zero_shot.py`).
"""

from __future__ import annotations

import torch

from brainwork.engine.encoder import EncoderRunner
from brainwork.errors import ModelFormatError

# Cosines of one text to label hypotheses differ by a few hundredths; 1/0.05 turns a 0.05 lead
# into e^1 odds, close to how often MiniLM's first choice is right on topic labels.
EMBEDDING_TEMPERATURE = 0.05


class NliZeroShot:
    def __init__(self, runner: EncoderRunner) -> None:
        cfg = runner.config
        entail = [i for i, name in sorted(cfg.id2label.items()) if name.lower().startswith("entail")]
        self.is_nli = bool(entail)
        # transformers' rule: the first label spelled entail*, else the last label.
        self.entailment = entail[0] if entail else cfg.num_labels - 1
        self.contradiction = cfg.num_labels - 1 if self.entailment == 0 else 0
        if cfg.num_labels < 2:
            raise ModelFormatError(f"an NLI model needs at least 2 labels, this one has {cfg.num_labels}")
        self.runner = runner

    def scores(
        self, texts: list[str], labels: list[str], template: str, multi_label: bool, truncation: bool | None
    ) -> torch.Tensor:
        pairs = [(text, template.format(label)) for text in texts for label in labels]
        logits = self.runner.classify_logits(pairs, truncation=truncation).float()  # (N * L, C)
        logits = logits.view(len(texts), len(labels), -1)  # (N, L, C)
        if multi_label or len(labels) == 1:
            two = logits[..., [self.contradiction, self.entailment]]  # (N, L, 2)
            return torch.softmax(two, dim=-1)[..., 1]
        return torch.softmax(logits[..., self.entailment], dim=-1)  # (N, L)


class EmbeddingZeroShot:
    def __init__(self, runner: EncoderRunner, temperature: float = EMBEDDING_TEMPERATURE) -> None:
        if runner.pooling_modes is None:
            raise ModelFormatError("this sentence-transformers folder has no Pooling module")
        self.runner, self.temperature = runner, temperature

    def scores(
        self,
        texts: list[str],
        labels: list[str],
        template: str,
        multi_label: bool,
        truncation: bool | None,
        adapt: bool = False,
    ) -> torch.Tensor:
        x = self.runner.embed(texts, normalize=True, truncation=truncation)  # (N, D)
        h = self.runner.embed([template.format(label) for label in labels], normalize=True)  # (L, D)
        if adapt:
            h = adapted_prototypes(x, h)
        cos = x @ h.T  # (N, L)
        if multi_label:
            return cos.clamp(0.0, 1.0)
        return torch.softmax(cos / self.temperature, dim=-1)


def adapted_prototypes(x: torch.Tensor, seeds: torch.Tensor, max_rounds: int = 20) -> torch.Tensor:
    """k-means on unit vectors x (N, D) started from the label seeds (L, D): each round a label's
    prototype becomes the normalised mean of the inputs nearest to it; a label that wins no
    input keeps its last prototype. Returns (L, D)."""
    protos = seeds.clone()
    owner = (x @ protos.T).argmax(dim=1)  # (N,)
    for _ in range(max_rounds):
        for k in range(protos.shape[0]):
            members = x[owner == k]  # (n_k, D)
            if len(members):
                protos[k] = torch.nn.functional.normalize(members.mean(dim=0), dim=0)
        moved = (x @ protos.T).argmax(dim=1)
        if torch.equal(moved, owner):
            break
        owner = moved
    return protos
