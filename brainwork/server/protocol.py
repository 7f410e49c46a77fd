"""Request bodies of the OpenAI-compatible API, as pydantic models (they also make /openapi.json).

Fields and ranges follow OpenAI's API reference; the extras (`top_k`, `min_p`,
`repetition_penalty`, `min_tokens`, `ignore_eos`, `stop_token_ids`, `skip_special_tokens`,
`chat_template_kwargs`) follow vLLM. Unknown fields are accepted and ignored, as vLLM does, so that
clients newer than this server keep working. Responses are plain dicts built in `responses.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 64  # choices per request: each is a sequence in the engine
MAX_STOP = 16  # stop strings per request

Temperature = Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)]
Penalty = Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False)]
TokenId = Annotated[int, Field(ge=0)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Body):
    include_usage: bool = False


class SamplingFields(_Body):
    """What chat and completions share."""

    model: str | None = Field(None, description="served model name; omitted means the server's chat model")
    n: int = Field(1, ge=1, le=MAX_N, description="completions to generate for each prompt")
    temperature: Temperature | None = None
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOP} stop strings")
    max_tokens: int | None = Field(None, ge=1)
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]] | None = Field(
        None, description="token id (as a string) -> bias added to its logit"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # extras, as vLLM names them
    top_k: int | None = Field(None, ge=-1, description="keep the k likeliest tokens; 0 or -1: all")
    min_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    repetition_penalty: float | None = Field(None, gt=0, le=10, allow_inf_nan=False)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[TokenId] | None = None
    skip_special_tokens: bool = True


class TextPart(_Body):
    type: str = Field(description="'text'; image and audio parts are refused with a 400")
    text: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="preferred over the older max_tokens")
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    add_generation_prompt: bool = True
    chat_template_kwargs: dict[str, Any] | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]] = Field(
        description="a string, a list of strings, a list of token ids, or a list of token-id lists"
    )
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None


class EmbeddingRequest(_Body):
    model: str | None = None
    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class TokenizeRequest(_Body):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True
    return_token_strs: bool = False
    chat_template_kwargs: dict[str, Any] | None = None


class DetokenizeRequest(_Body):
    model: str | None = None
    tokens: list[TokenId]


MAX_TASK_ITEMS = 2048  # inputs, documents or pairs in one task request, as OpenAI's embeddings


class ClassifyRequest(_Body):
    """vLLM's /classify, plus `labels` for zero-shot classification."""

    model: str | None = None
    input: str | list[Any] = Field(
        description="a text or a list of texts, or of images ({'image': base64} or an OpenAI image_url part); "
        "a bad item gets its own error entry"
    )
    top_k: int | None = Field(None, ge=1, le=1000, description="images: how many classes to list (default 5)")
    labels: list[str] | None = Field(None, description="candidate labels: zero-shot classification")
    hypothesis_template: str = "This example is {}."
    multi_label: bool = False
    truncation: bool | None = Field(None, description="cut over-long inputs instead of reporting them")


class TextDocument(_Body):
    text: str


class RerankRequest(_Body):
    """The rerank shape of Jina, Cohere and vLLM."""

    model: str | None = None
    query: str
    documents: list[Any] = Field(description="texts (or {'text': ...}); a bad item is listed under 'errors'")
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True
    truncation: bool | None = None


class ScoreRequest(_Body):
    """vLLM's /v1/score: text_1 against each of text_2 (1:N), or pair by pair (N:N)."""

    model: str | None = None
    text_1: str | list[Any]
    text_2: str | list[Any]
    truncation: bool | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """Every failure's body, as OpenAI's."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "invalid field, malformed JSON, or a prompt over the context window"),
        (401, "missing or wrong API key"),
        (404, "unknown model"),
        (413, "request body over --max-body-mb"),
        (429, "the queue is full; see Retry-After"),
        (503, "the models are still loading; see Retry-After"),
    )
}
