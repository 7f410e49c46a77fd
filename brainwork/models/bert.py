"""The BERT encoder family (BERT, MiniLM, RoBERTa, DistilBERT) in plain PyTorch.

One module tree covers all four: they are the same post-LayerNorm transformer and differ only in
embeddings (RoBERTa's position offset, DistilBERT's missing token types), in names (mapped in
`bert_weights`) and in the classification head's activation. Modules are built on the `meta`
device and `load_weights` puts the checkpoint tensors in place as parameters, so the weights
exist once in memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from brainwork.errors import ModelFormatError
from brainwork.layers import encoder_attention
from brainwork.layers.activation import get_activation
from brainwork.models.bert_weights import checkpoint_name, internal_name
from brainwork.models.encoder_config import EncoderConfig
from brainwork.models.vocab import ONEDNN, onednn_linear
from brainwork.quant.float_linear import FloatLinear

# oneDNN matmuls take bfloat16 only where the CPU has AVX-512 (else it raises; F.linear does not)
FUSED_DTYPES = (
    (torch.float32, torch.bfloat16) if ONEDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported() else (torch.float32,)
)
# Hugging Face activation names -> oneDNN's post-op (name, algorithm) applying the same function
FUSED_ACTIVATIONS = {
    "gelu": ("gelu", "none"),  # erf
    "gelu_new": ("gelu", "tanh"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "gelu_fast": ("gelu", "tanh"),
    "relu": ("relu", ""),
}


class EncoderEmbeddings(nn.Module):
    """Word + position (+ token type) embeddings, then LayerNorm."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        b, t = input_ids.shape
        if self.cfg.position_offset:
            # RoBERTa: real tokens count up from padding_idx + 1, padding sits at padding_idx.
            mask = attention_mask.to(torch.long)
            positions = torch.cumsum(mask, dim=1) * mask + self.cfg.pad_token_id  # (B, T)
        else:
            positions = torch.arange(t, device=input_ids.device).expand(b, t)  # (B, T)
        x = self.word(input_ids) + self.position(positions)  # (B, T, H)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)  # (B, T)
            x = x + self.token_type(token_type_ids)
        # DistilBERT has no token types: ids a tokenizer produced anyway are all 0 and unused.
        return self.norm(x)


class EncoderLayer(nn.Module):
    """Self-attention then MLP, each followed by residual + LayerNorm (post-LN)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
        self.attn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.up = nn.Linear(h, cfg.intermediate_size)
        self.down = nn.Linear(cfg.intermediate_size, h)
        self.mlp_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.act = get_activation(cfg.hidden_act)
        self.fused_act = FUSED_ACTIVATIONS.get(cfg.hidden_act)  # oneDNN post-op (name, algorithm) or None
        self.qkv: nn.Linear | None = None  # q, k, v stacked (3H, H), made by `fuse` after loading

    def fuse(self) -> None:
        """Stack q, k and v into one projection. Their own modules stay (`first_only` projects the
        queries of one position only) as views of the stacked tensors: no second copy."""
        h = self.q.in_features
        qkv = nn.Linear(h, 3 * h, device="meta")
        parts = (self.q, self.k, self.v)
        qkv.weight = nn.Parameter(torch.cat([m.weight for m in parts]), requires_grad=False)  # (3H, H)
        qkv.bias = nn.Parameter(torch.cat([m.bias for m in parts]), requires_grad=False)  # (3H,)
        for i, m in enumerate(parts):
            m.weight = nn.Parameter(qkv.weight[i * h : (i + 1) * h], requires_grad=False)
            m.bias = nn.Parameter(qkv.bias[i * h : (i + 1) * h], requires_grad=False)
        self.qkv = qkv

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor, first_only: bool = False, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, H); attend (B, 1, 1, T) bool, True where a key is a real token; `lengths` (B,)
        int64 the same mask as counts when every row is right-padded (then the C kernel of
        `layers/encoder_attention.py` attends straight from the projections' layout).

        `first_only`: compute the output of position 0 alone, (B, 1, H): all a classification
        head reads from the last layer, so its queries, output projection and MLP shrink from
        T positions to one (keys and values still cover every token)."""
        b, t, h = x.shape
        xq = x[:, :1] if first_only else x  # (B, Tq, H)
        tq = xq.shape[1]

        def heads(y: torch.Tensor, n: int) -> torch.Tensor:  # (B, n, H) -> (B, nh, n, hd)
            return y.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        if self.qkv is not None and not first_only:
            # one matmul of width 3H instead of three of H: fewer, larger GEMMs run nearer peak
            q, k, v = self.qkv(x).split(h, dim=-1)  # each (B, T, H), views
        else:
            q, k, v = self.q(xq), self.k(x), self.v(x)
        attn = None if lengths is None else encoder_attention.attend(q, k, v, lengths, self.num_heads)
        if attn is None:
            attn = F.scaled_dot_product_attention(heads(q, tq), heads(k, t), heads(v, t), attend)
            attn = attn.transpose(1, 2).reshape(b, tq, h)  # (B, Tq, H)
        xq = self.attn_norm(xq + self.o(attn))
        return self.mlp_norm(xq + self.down(self._up(xq)))

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        """act(up(x)), (B, T, H) -> (B, T, I): with the activation applied by oneDNN as the matmul
        writes its output where it can (measured at 8,000 rows of MiniLM in bfloat16: 26 ms
        against 42 ms for the matmul, then GELU's own pass over the (8000, 1536) result)."""
        w, rows = self.up.weight, x.numel() // x.shape[-1]
        if (
            self.fused_act is None
            or not ONEDNN
            or not x.is_cpu
            or x.dtype != w.dtype
            or w.dtype not in FUSED_DTYPES
            or rows <= FloatLinear.small_rows  # few rows: FloatLinear's own kernel is faster
            or torch.is_grad_enabled()
        ):
            return self.act(self.up(x))
        out = onednn_linear(x.reshape(rows, -1), w, self.up.bias, *self.fused_act)  # (rows, I)
        return out.view(*x.shape[:-1], -1)


class ClassificationHead(nn.Module):
    """out(act(dense(h[:, 0]))): BERT's pooler + classifier (tanh), RoBERTa's classifier
    (tanh), DistilBERT's pre_classifier + classifier (ReLU). Dropout is off at inference."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.num_labels)
        self.act = torch.relu if cfg.family == "distilbert" else torch.tanh

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(hidden[:, 0])))  # (B, num_labels)


class BertEncoder(nn.Module):
    """Embeddings + encoder layers (+ classification head when the checkpoint is a
    `*ForSequenceClassification`). Construct under `torch.device("meta")`, then `load_weights`."""

    def __init__(self, cfg: EncoderConfig, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = cfg
        self.dtype = dtype
        self.embeddings = EncoderEmbeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.head = ClassificationHead(cfg) if cfg.is_sequence_classifier else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        first_only: bool = False,
    ) -> torch.Tensor:
        """input_ids, attention_mask, token_type_ids (B, T) -> last hidden state (B, T, H), or
        only its first position (B, 1, H) with `first_only` (what `classify` reads)."""
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        x = self.embeddings(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        attend = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        lengths = encoder_attention.prefix_lengths(attention_mask) if x.is_cpu else None  # (B,) or None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, attend, first_only and i == last, lengths)
        return x

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last hidden state (B, T, H), or its first position (B, 1, H) -> logits (B, num_labels)."""
        if self.head is None:
            raise ModelFormatError(
                f"this checkpoint ({', '.join(self.config.architectures) or 'no architectures'}) "
                "has no sequence-classification head"
            )
        return self.head(hidden)

    def _check_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
    ) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
                f"shape {tuple(input_ids.shape)}"
            )
        if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids shape {tuple(token_type_ids.shape)} differs from input_ids "
                f"shape {tuple(input_ids.shape)}"
            )
        if input_ids.shape[1] > self.config.max_length:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} positions; the model holds at most {self.config.max_length}"
            )

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Install checkpoint tensors (HF names, prefixed or not) as this model's parameters.

        Unused tensors are skipped; a wrong shape or a parameter left unloaded raises
        `ModelFormatError` naming it."""
        expected = {name: p.shape for name, p in self.named_parameters()}
        loaded: set[str] = set()
        for name, tensor in weights:
            target = internal_name(name, self.config.family)
            if target is None or target not in expected:
                continue
            if tensor.shape != expected[target]:
                raise ModelFormatError(
                    f"checkpoint tensor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(expected[target])}"
                )
            module_name, _, leaf = target.rpartition(".")
            # Same dtype: .to() returns the tensor itself, so nothing is copied.
            param = nn.Parameter(tensor.to(self.dtype), requires_grad=False)
            setattr(self.get_submodule(module_name), leaf, param)
            loaded.add(target)
        missing = sorted(checkpoint_name(p, self.config.family) for p in set(expected) - loaded)
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise ModelFormatError(
                f"checkpoint leaves {len(missing)} {self.config.model_type} parameter(s) unloaded: {shown}"
            )
        for layer in self.layers:
            layer.fuse()
