"""`EncoderRunner`: sentence embeddings, token features and classification logits from a
Hugging Face (or sentence-transformers) folder of a BERT-family model.

The folder holds `config.json`, `model.safetensors` (or a sharded index) and `tokenizer.json`.
When it is a sentence-transformers folder, pooling, normalisation, maximum length and default
truncation follow its `modules.json` exactly as sentence-transformers would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tokenizers import Encoding, Tokenizer, normalizers

from brainwork.engine.st_layout import read_layout, tokenizer_max_length
from brainwork.engine.token_batches import plan_batches
from brainwork.errors import ModelFormatError, ModelNotFoundError
from brainwork.layers.pooling import l2_normalize, pool
from brainwork.loader.safetensors import iter_safetensors
from brainwork.models.bert import BertEncoder
from brainwork.models.encoder_config import EncoderConfig
from brainwork.quant.float_linear import float_linears

# Outputs of one batch for each of its rows: (B, T, H) hidden + (B, T) mask -> B tensors.
_BatchFn = Callable[[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]]
# One input: a text, or a (text, text_pair) pair as cross-encoders and NLI models read them.
TextInput = str | tuple[str, str]


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# what the encoder task pipelines run in (embeddings, classification, zero-shot, rerank and
# similarity; RAG; the server), see encoder_dtype. Raw features and `EncoderRunner` itself
# default to float32, the numbers transformers gives.
TASK_DTYPE = "auto"


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX), where bfloat16
    matmuls run at twice float32's rate; elsewhere torch emulates them, slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def encoder_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype, "float32", "bfloat16", or "auto": bfloat16 where the CPU computes it natively
    (sentence embeddings keep cosine >= 0.9998 to float32's on all-MiniLM-L6-v2), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if native_bfloat16() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected auto, {', '.join(DTYPES)} or a torch dtype, got {dtype!r}")
    return DTYPES[dtype]


class EncoderRunner:
    def __init__(
        self,
        folder: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        token_budget: int = 8192,
        truncation: bool | None = None,
    ) -> None:
        """`token_budget`: most padded tokens (longest x batch size) per forward pass.
        `truncation`: default for every call; None means on for sentence-transformers folders
        (as sentence-transformers does) and off otherwise."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelNotFoundError(f"model folder {folder} does not exist")
        if token_budget <= 0:
            raise ValueError(f"token_budget must be positive, got {token_budget}")
        layout = read_layout(folder)
        model_dir = layout.model_dir if layout else folder
        self._config = _read_config(model_dir)
        self.device = torch.device(device)
        self.token_budget = token_budget

        self.pooling_modes: tuple[str, ...] | None  # None: a sentence-transformers folder without Pooling
        if layout is not None:
            self.pooling_modes = layout.pooling_modes
            self.normalize = layout.normalize
            limit = layout.max_seq_length or tokenizer_max_length(model_dir, self._config)
        else:
            # A plain HF folder: what sentence-transformers builds for one (mean, no normalise).
            self.pooling_modes, self.normalize = ("mean",), False
            limit = tokenizer_max_length(model_dir, self._config)
        # Never past the position table, whatever a config file claims.
        self.max_length = min(limit, self._config.max_length)
        self.truncation = truncation if truncation is not None else layout is not None

        self._tokenizer = _load_tokenizer(model_dir, layout.do_lower_case if layout else False)
        self._truncating = Tokenizer.from_str(self._tokenizer.to_str())
        # A pair is cut from its longer side first (transformers' "longest_first").
        self._truncating.enable_truncation(max_length=self.max_length, strategy="longest_first")

        self.dtype = encoder_dtype(dtype)
        with torch.device("meta"):
            self.model = BertEncoder(self._config, dtype=self.dtype)
        self.model.load_weights(iter_safetensors(model_dir))  # memory-mapped, one tensor at a time
        self.model.eval().to(self.device)
        float_linears(self.model)  # float32 on CPU: oneDNN's matmul, 7-20% faster than F.linear here

    @property
    def config(self) -> EncoderConfig:
        return self._config

    @property
    def id2label(self) -> dict[int, str]:
        return dict(self._config.id2label)

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Token count of each text, special tokens included, before any truncation."""
        return [len(e.ids) for e in self._encode(texts, truncation=False, check_length=False)]

    def embed(self, texts: list[str], normalize: bool | None = None, truncation: bool | None = None) -> torch.Tensor:
        """Sentence embeddings (N, D); `normalize` None follows the folder (Normalize module)."""
        if self.pooling_modes is None:
            raise ModelFormatError("this sentence-transformers folder has no Pooling module")
        modes = self.pooling_modes
        unit = self.normalize if normalize is None else normalize

        def sentence(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            # pooled in float32: a bfloat16 sum over hundreds of tokens would lose the low bits
            pooled = pool(hidden.float(), mask, modes)  # (B, H * len(modes))
            return l2_normalize(pooled) if unit else pooled

        rows = self._run(texts, truncation, sentence)
        if not rows:
            return torch.empty(0, self._config.hidden_size * len(modes), device=self.device)
        return torch.stack(rows)

    def features(self, texts: list[str], truncation: bool | None = None) -> list[torch.Tensor]:
        """Last hidden state of each text, (T_i, H), special tokens included, no padding."""

        def unpadded(hidden: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
            # clone: each row must not keep the whole padded batch alive
            return [h[: int(n)].clone() for h, n in zip(hidden, mask.sum(dim=1), strict=True)]

        return self._run(texts, truncation, unpadded)

    def classify_logits(self, texts: Sequence[TextInput], truncation: bool | None = None) -> torch.Tensor:
        """Sequence-classification logits (N, num_labels); an input may be a (text, text_pair)."""
        if self.model.head is None:
            architectures = ", ".join(self._config.architectures) or "no architectures"
            raise ModelFormatError(f"this folder ({architectures}) is not a sequence-classification checkpoint")
        rows = self._run(texts, truncation, lambda hidden, _: self.model.classify(hidden), first_only=True)
        if not rows:
            return torch.empty(0, self._config.num_labels, device=self.device)
        return torch.stack(rows)

    def _run(
        self, texts: Sequence[TextInput], truncation: bool | None, fn: _BatchFn, first_only: bool = False
    ) -> list[torch.Tensor]:
        encodings = self._encode(texts, self.truncation if truncation is None else truncation)
        out: list[torch.Tensor | None] = [None] * len(encodings)
        batches = plan_batches([len(e.ids) for e in encodings], self.token_budget)
        with torch.inference_mode():
            for batch in batches:
                ids, mask, types = self._pad([encodings[i] for i in batch])
                hidden = self.model(ids, mask, types, first_only)  # (B, T or 1, H)
                for i, row in zip(batch, fn(hidden, mask), strict=True):
                    out[i] = row
        return [row for row in out if row is not None]

    def _encode(self, texts: Sequence[TextInput], truncation: bool, check_length: bool = True) -> list[Encoding]:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(f"texts must be a list of str, got {type(texts).__name__}")
        for i, text in enumerate(texts):
            if isinstance(text, tuple):
                if len(text) != 2 or not all(isinstance(t, str) for t in text):
                    raise ValueError(f"texts[{i}] must be a (text, text_pair) pair of str, got {text!r:.80}")
            elif not isinstance(text, str):
                raise ValueError(f"texts[{i}] must be str, got {type(text).__name__}")
        if not texts:
            return []
        tokenizer = self._truncating if truncation else self._tokenizer
        encodings = tokenizer.encode_batch(list(texts))
        if not truncation and check_length:
            for i, enc in enumerate(encodings):
                if len(enc.ids) > self.max_length:
                    raise ValueError(
                        f"texts[{i}] is {len(enc.ids)} tokens long, over the model's maximum of "
                        f"{self.max_length}; pass truncation=True to cut it"
                    )
        return encodings

    def _pad(self, encodings: list[Encoding]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Right-padded input_ids, attention_mask, token_type_ids, each (B, T)."""
        b, t = len(encodings), max(len(e.ids) for e in encodings)
        ids = torch.full((b, t), self._config.pad_token_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((b, t), dtype=torch.long)  # (B, T)
        types = torch.zeros((b, t), dtype=torch.long)  # (B, T)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = torch.tensor(enc.ids, dtype=torch.long)
            mask[row, :n] = 1
            types[row, :n] = torch.tensor(enc.type_ids, dtype=torch.long)
        has_types = self._config.type_vocab_size > 0
        return ids.to(self.device), mask.to(self.device), types.to(self.device) if has_types else None


def _read_config(model_dir: Path) -> EncoderConfig:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelFormatError(f"{model_dir} has no config.json")
    try:
        return EncoderConfig.from_hf(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{path} is not valid JSON: {e}") from e


def _load_tokenizer(model_dir: Path, lowercase: bool) -> Tokenizer:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelFormatError(f"{model_dir} has no tokenizer.json (a fast-tokenizer file)")
    tokenizer = Tokenizer.from_file(str(path))
    # tokenizer.json may carry padding/truncation settings (e.g. fixed 128): batches are padded
    # here, and truncation is chosen per call.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if lowercase:
        # sentence_bert_config do_lower_case: lowercase before the tokenizer's own normalizer.
        current = tokenizer.normalizer
        steps = [normalizers.Lowercase()] + ([current] if current is not None else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
    return tokenizer
