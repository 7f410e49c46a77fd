"""Weight assignment shared by all models: parameters built on `meta`, filled once by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from brainwork.errors import ModelFormatError


def assign_weights(
    model: nn.Module,
    weights: Iterable[tuple[str, torch.Tensor]],
    *,
    rename: Callable[[str], str | None] = lambda n: n,
    dtype: torch.dtype | None = None,
    ties: dict[str, str] | Callable[[], dict[str, str]] | None = None,
) -> None:
    """Assign each `(name, tensor)` to the parameter of that name, replacing its meta tensor.

    `rename` maps checkpoint names to module names, or to None for tensors the model does not
    use. `ties` maps a parameter to the one it shares storage with (a tied output head).
    A checkpoint tensor with no parameter, a shape mismatch, or a parameter that stays on
    `meta` afterwards raises `ModelFormatError` naming it.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    for ckpt_name, tensor in weights:
        name = rename(ckpt_name)
        if name is None:
            continue
        if name not in params:
            raise ModelFormatError(f"checkpoint tensor {ckpt_name!r} matches no parameter of {type(model).__name__}")
        current = params[name]
        if tuple(current.shape) != tuple(tensor.shape):
            raise ModelFormatError(
                f"checkpoint tensor {ckpt_name!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(current.shape)}"
            )
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        value = tensor if dtype is None else tensor.to(dtype)
        setattr(owner, attr, nn.Parameter(value, requires_grad=False))
    for target, source in ((ties() if callable(ties) else ties) or {}).items():
        owner_name, _, attr = target.rpartition(".")
        setattr(model.get_submodule(owner_name), attr, model.get_parameter(source))
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise ModelFormatError(f"checkpoint lacks {len(missing)} tensors of {type(model).__name__}: {shown}")


def materialize_buffers(model: nn.Module) -> None:
    """Non-persistent buffers made on `meta` (rotary frequencies) are rebuilt by their owners."""
    for module in model.modules():
        reset = getattr(module, "reset_buffers", None)
        if callable(reset):
            reset()
