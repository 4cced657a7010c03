"""The bytes real providers send: OpenAI chat completions (SSE) and Ollama's chat (NDJSON).

Each builder returns a :class:`Wire`: the frames before the content, one frame per content
piece, and the frames after it, so the server can cut or hold a stream between any two
content pieces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


@dataclass
class Wire:
    content_type: str
    head: list[bytes] = field(default_factory=list)
    content: list[bytes] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def _usage(prompt: str, pieces: list[str]) -> dict[str, int]:
    prompt_tokens = len(prompt.split())
    completion_tokens = len(pieces)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def prompt_text(body: dict[str, Any]) -> str:
    return " ".join(str(m.get("content") or "") for m in body.get("messages") or [])


# --- OpenAI ------------------------------------------------------------------------------


def openai_stream(body: dict[str, Any], pieces: list[str], reasoning: list[str]) -> Wire:
    created = int(time.time())
    model = str(body.get("model", "fake"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    wire = Wire(SSE)
    wire.head.append(_sse(chunk({"role": "assistant", "content": ""})))
    # Reasoning models behind OpenAI-compatible servers (vLLM, DeepSeek) think out loud first.
    wire.head += [_sse(chunk({"reasoning_content": piece})) for piece in reasoning]
    wire.content = [_sse(chunk({"content": piece})) for piece in pieces]
    wire.tail.append(_sse(chunk({}, "stop")))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(prompt_text(body), pieces),
        }
        wire.tail.append(_sse(usage))
    wire.tail.append(_sse("[DONE]"))
    return wire


def openai_completion(body: dict[str, Any], pieces: list[str]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "fake")),
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces)},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(prompt_text(body), pieces),
    }


_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind, code = _OPENAI_ERRORS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --- Ollama ------------------------------------------------------------------------------


def _ollama_line(
    body: dict[str, Any], content: str, *, thinking: str | None = None, **extra: Any
) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    return {
        "model": str(body.get("model", "fake")),
        "created_at": "2025-01-01T00:00:00.000000Z",
        "message": message,
        **extra,
    }


def _ollama_done(body: dict[str, Any], pieces: list[str], content: str) -> dict[str, Any]:
    usage = _usage(prompt_text(body), pieces)
    return _ollama_line(
        body,
        content,
        done=True,
        done_reason="stop",
        total_duration=1_000_000,
        load_duration=1_000,
        prompt_eval_count=usage["prompt_tokens"],
        prompt_eval_duration=1_000,
        eval_count=usage["completion_tokens"],
        eval_duration=1_000,
    )


def ollama_stream(body: dict[str, Any], pieces: list[str], reasoning: list[str]) -> Wire:
    wire = Wire(NDJSON)
    wire.head = [
        (json.dumps(_ollama_line(body, "", thinking=piece, done=False)) + "\n").encode()
        for piece in reasoning
    ]
    wire.content = [
        (json.dumps(_ollama_line(body, piece, done=False)) + "\n").encode() for piece in pieces
    ]
    wire.tail.append((json.dumps(_ollama_done(body, pieces, "")) + "\n").encode())
    return wire


def ollama_completion(body: dict[str, Any], pieces: list[str]) -> dict[str, Any]:
    return _ollama_done(body, pieces, "".join(pieces))


def _generate_line(body: dict[str, Any], content: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": str(body.get("model", "fake")),
        "created_at": "2025-01-01T00:00:00.000000Z",
        "response": content,
        **extra,
    }


def ollama_generate_stream(body: dict[str, Any], pieces: list[str], reasoning: list[str]) -> Wire:
    wire = Wire(NDJSON)
    wire.content = [
        (json.dumps(_generate_line(body, piece, done=False)) + "\n").encode() for piece in pieces
    ]
    usage = _usage(str(body.get("prompt") or ""), pieces)
    done = _generate_line(
        body,
        "",
        done=True,
        done_reason="stop",
        prompt_eval_count=usage["prompt_tokens"],
        eval_count=usage["completion_tokens"],
    )
    wire.tail.append((json.dumps(done) + "\n").encode())
    return wire


def ollama_generate(body: dict[str, Any], pieces: list[str]) -> dict[str, Any]:
    usage = _usage(str(body.get("prompt") or ""), pieces)
    return _generate_line(
        body,
        "".join(pieces),
        done=True,
        done_reason="stop",
        prompt_eval_count=usage["prompt_tokens"],
        eval_count=usage["completion_tokens"],
    )


def ollama_show(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelfile": "FROM fake",
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": {"format": "gguf", "family": "llama", "parameter_size": "8B"},
        "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
    }


def ollama_tags(models: list[str]) -> dict[str, Any]:
    return {"models": [{"name": m, "model": m, "size": 1} for m in models]}


def ollama_error(status: int, message: str) -> dict[str, Any]:
    return {"error": message}


# --- the chat endpoints ------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    """One chat endpoint: how it streams, how it answers whole, how it reports an error."""

    stream: Callable[[dict[str, Any], list[str], list[str]], Wire]
    whole: Callable[[dict[str, Any], list[str]], dict[str, Any]]
    error: Callable[[int, str], dict[str, Any]]
    streams_by_default: bool


CHATS = {
    "/v1/chat/completions": Chat(openai_stream, openai_completion, openai_error, False),
    "/api/chat": Chat(ollama_stream, ollama_completion, ollama_error, True),
    # Where LiteLLM's ``ollama/`` models go; ``ollama_chat/`` ones use /api/chat.
    "/api/generate": Chat(ollama_generate_stream, ollama_generate, ollama_error, True),
}
