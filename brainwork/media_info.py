"""Architecture, parameter count and weight type of the speech and image model files, read from
their headers only (for `brainwork models`, which must answer in about a second: no ONNX Runtime,
CTranslate2 or torch import, no weights read).

- onnx (Piper): the protobuf wire format walked by hand: ModelProto.graph (field 7) ->
  GraphProto.initializer (field 5) -> TensorProto dims (1) and data_type (2); raw data skipped.
- ct2 (CTranslate2 `model.bin`): version, spec name, revision, then per variable its name, rank,
  dims, type id and byte count; the data is skipped with a seek.
- torch (a `.pth`, zip or legacy): the pickle of the state dict read with stand-ins for torch's rebuild
  functions, so each tensor's shape is seen and no storage is loaded.
"""

from __future__ import annotations

import math
import pickle
import struct
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

ONNX_TYPES = {1: "F32", 10: "F16", 16: "BF16", 11: "F64", 3: "I8", 7: "I64", 6: "I32"}
CT2_TYPES = {0: "F32", 1: "I8", 2: "I16", 3: "I32", 4: "F16", 5: "BF16"}


def media_info(fmt: str, path: Path) -> tuple[str, int, str]:
    """(architecture, parameters, weight type) of an onnx file, a ct2 folder or a torch state dict."""
    if fmt == "onnx":
        return _onnx_info(path)
    if fmt == "ct2":
        return _ct2_info(path / "model.bin" if path.is_dir() else path)
    if fmt == "torch":
        return _torch_info(path)
    raise ValueError(f"no header reader for format {fmt!r}")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Any:
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wire} not expected here")
        yield field, wire, value


def _onnx_info(path: Path) -> tuple[str, int, str]:
    data = path.read_bytes()  # the weights are in the file, so the whole file is read once (~60 MB)
    graph = next(v for f, w, v in _fields(data) if f == 7 and w == 2)
    params, types = 0, Counter()
    for f, w, v in _fields(graph):
        if f != 5 or w != 2:
            continue
        dims, dtype = [], 0
        for tf, tw, tv in _fields(v):
            if tf == 1 and tw == 0:
                dims.append(tv)
            elif tf == 1 and tw == 2:  # packed dims
                j = 0
                while j < len(tv):
                    d, j = _varint(tv, j)
                    dims.append(d)
            elif tf == 2 and tw == 0:
                dtype = tv
        n = math.prod(dims)
        if ONNX_TYPES.get(dtype, "?").startswith(("F", "BF")):
            params += n
            types[ONNX_TYPES[dtype]] += n
    return "vits", params, types.most_common(1)[0][0] if types else "-"


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    return struct.unpack(fmt, f.read(size))


def _ct2_info(path: Path) -> tuple[str, int, str]:
    params, types = 0, Counter()
    with path.open("rb") as f:
        (version,) = _read(f, "<I")
        if not 1 <= version <= 10:
            raise ValueError(f"{path}: not a CTranslate2 model.bin (version {version})")
        (n,) = _read(f, "<H")
        spec = f.read(n).rstrip(b"\0").decode()
        _read(f, "<I")  # revision
        (count,) = _read(f, "<I")
        for _ in range(count):
            (n,) = _read(f, "<H")
            f.seek(n, 1)  # the variable's name
            (rank,) = _read(f, "<B")
            dims = _read(f, f"<{rank}I")
            (dtype,) = _read(f, "<B")
            (nbytes,) = _read(f, "<I")
            f.seek(nbytes, 1)
            if rank and CT2_TYPES.get(dtype, "?")[0] in "FB":
                params += math.prod(dims)
                types[CT2_TYPES[dtype]] += math.prod(dims)
    return spec.removesuffix("Spec").lower(), params, types.most_common(1)[0][0] if types else "-"


class _Shape:
    def __init__(self, dtype: str, size: tuple[int, ...]) -> None:
        self.dtype, self.size = dtype, size


class _Dict(dict):
    pass


class _StateDictReader(pickle.Unpickler):
    """Unpickles torch's `data.pkl` into `_Shape`s: storages stay names, tensors keep their size."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, *rest: _Shape(storage, tuple(size))
        if module == "torch" and name.endswith("Storage"):
            return name.removesuffix("Storage")  # e.g. "Float"
        if module == "collections" and name == "OrderedDict":
            return _Dict  # torch sets `_metadata` on it: a plain dict has no __dict__
        raise pickle.UnpicklingError(f"{module}.{name} is not expected in a state dict")

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[1]  # ("storage", torch.FloatStorage -> "Float", key, location, numel)
        return kind if isinstance(kind, str) else "?"


def _torch_info(path: Path) -> tuple[str, int, str]:
    if zipfile.is_zipfile(path):  # torch.save's format since 1.6
        with zipfile.ZipFile(path) as z:
            pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
            with z.open(pkl) as f:
                state = _StateDictReader(f).load()
    else:  # the legacy format: magic number, protocol, system info, then the state dict's pickle
        with path.open("rb") as f:
            for _ in range(3):
                _StateDictReader(f).load()  # plain ints and a dict: no class may load
            state = _StateDictReader(f).load()
    params, types = 0, Counter()
    for key, t in state.items():
        if isinstance(t, _Shape) and t.dtype in ("Float", "Half", "BFloat16") and "running_" not in key:
            params += math.prod(t.size)
            types[{"Float": "F32", "Half": "F16", "BFloat16": "BF16"}[t.dtype]] += math.prod(t.size)
    arch = "efficientnet-lite" if any(k.startswith("_blocks.") for k in state) else "?"
    return arch, params, types.most_common(1)[0][0] if types else "-"
