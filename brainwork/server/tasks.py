"""The task models behind /classify, /v1/rerank and /v1/score, loaded with the server's other models.

One classifier model answers /classify: without labels it is the text-classification pipeline
(a fine-tuned head, chat-model sentiment, or embedding prototypes), with labels the zero-shot
pipeline on the same weights. One pair model answers /v1/rerank and /v1/score (a cross-encoder,
or a bi-encoder). Both default to the server's embedding model and share its loaded encoder
where that computes in float32 (where it runs bfloat16, the tasks load their own float32 copy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brainwork.engine.encoder import EncoderRunner
    from brainwork.pipelines.pair_scoring import PairScorer
    from brainwork.pipelines.text_classification import TextClassificationPipeline
    from brainwork.pipelines.zero_shot import ZeroShotClassificationPipeline

log = logging.getLogger("brainwork.server")


@dataclass
class TaskModels:
    classifier_name: str | None
    classifier: TextClassificationPipeline | None
    zero_shot: ZeroShotClassificationPipeline | None
    zero_shot_error: str | None  # why labels cannot be used with this classifier, if they cannot
    pair_name: str | None
    pair: PairScorer | None

    @classmethod
    def load(
        cls,
        classifier_name: str | None,
        pair_name: str | None,
        shared: dict[str, EncoderRunner],
        dtype: str = "auto",
    ) -> TaskModels:
        """`shared`: encoders already loaded by name (the embedding model, in `dtype` too), reused,
        not reloaded. With the default dtype the scores equal the library pipelines' (`TASK_DTYPE`)."""
        from brainwork.pipelines.embeddings import load_encoder
        from brainwork.pipelines.pair_scoring import PairScorer
        from brainwork.pipelines.text_classification import TextClassificationPipeline
        from brainwork.pipelines.zero_shot import ZeroShotClassificationPipeline
        from brainwork.pipelines.zero_shot_encoder import NliZeroShot

        own: dict[str, EncoderRunner] = dict(shared)

        def encoder(name: str) -> EncoderRunner:
            if name not in own:
                own[name] = load_encoder(name, dtype=dtype)
            return own[name]

        classifier = zero_shot = pair = None
        zero_shot_error = None
        if classifier_name is not None:
            from brainwork.store import resolve_model

            if resolve_model(classifier_name).format == "gguf":
                classifier = TextClassificationPipeline(classifier_name)  # a chat model: its own dtype
                assert classifier.chat is not None
                zero_shot = ZeroShotClassificationPipeline(llm=classifier.chat.llm)
            else:
                runner = encoder(classifier_name)
                classifier = TextClassificationPipeline(runner=runner)
                zero_shot = ZeroShotClassificationPipeline(runner=runner)
                if isinstance(zero_shot.method, NliZeroShot) and not zero_shot.method.is_nli:
                    zero_shot_error = (
                        f"the classifier {classifier_name!r} is not an NLI model (no entailment label), "
                        "so it cannot score arbitrary labels; leave out 'labels'"
                    )
            log.info("classifier %s loaded (%s)", classifier_name, zero_shot.kind)
        if pair_name is not None:
            pair = PairScorer(encoder(pair_name))
            log.info("rerank/score model %s loaded (%s)", pair_name, pair.kind)
        return cls(classifier_name, classifier, zero_shot, zero_shot_error, pair_name, pair)

    def names(self) -> list[str]:
        return [n for n in (self.classifier_name, self.pair_name) if n is not None]
