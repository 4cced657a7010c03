"""The embedded offline model as a LiteLLM custom provider.

``psyche/offline`` streams at ``tps`` tokens per second, the words due every ``tick``
seconds in one chunk (0: word by word, as fast as possible); ``psyche/offline-nostream`` refuses
to stream, like a provider without streaming, so that the simulated path is exercised the
same way. Both travel LiteLLM's normal path.
Imported only after LiteLLM, by :mod:`psyche_sse.llm._litellm`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import litellm
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError

from ..config import DEFAULT_OFFLINE_TICK, DEFAULT_OFFLINE_TPS
from .names import OFFLINE_MODELS as MODELS
from .names import OFFLINE_NOSTREAM as NOSTREAM_MODEL
from .names import OFFLINE_PROVIDER as PROVIDER
from .names import OFFLINE_STREAMING as STREAMING_MODEL
from .offline_text import compose, read_prompt
from .simulate import split_words


def _reply(messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> str:
    seed = optional_params.get("seed")
    return compose(read_prompt(messages), seed=int(seed) if seed is not None else None)


def _usage(messages: list[dict[str, Any]], reply: str) -> dict[str, Any]:
    """The turn's usage, with its price: the offline model is free, and says so.

    A provider that reports its cost (``usage.cost``, as some hosted ones do) spares LiteLLM
    its own cost calculation at the end of every stream, a search of its price map that
    costs about 2 ms of CPU a turn for a model the map does not know.
    """
    prompt = sum(len(str(m.get("content") or "").split()) for m in messages)
    completion = len(reply.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": 0.0,
    }


def _check_model(model: str) -> None:
    if model not in (STREAMING_MODEL, NOSTREAM_MODEL):
        raise CustomLLMError(
            404, f"unknown offline model {PROVIDER}/{model}; choose one of {', '.join(MODELS)}"
        )


def _chunk(text: str) -> dict[str, Any]:
    return {
        "text": text,
        "is_finished": False,
        "finish_reason": "",
        "usage": None,
        "index": 0,
        "tool_use": None,
    }


class OfflineModel(CustomLLM):  # type: ignore[misc]  # LiteLLM's base is untyped here
    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        return self.completion(*args, **kwargs)

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        model = kwargs["model"]
        _check_model(model)
        messages = kwargs["messages"]
        reply = _reply(messages, kwargs.get("optional_params") or {})
        response = kwargs["model_response"]
        response.choices[0].message.content = reply
        response.choices[0].finish_reason = "stop"
        response.model = f"{PROVIDER}/{model}"
        response.usage = litellm.Usage(**_usage(messages, reply))
        return response

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise CustomLLMError(400, "synchronous streaming is not offered by the offline model")

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        model = kwargs["model"]
        _check_model(model)
        if model == NOSTREAM_MODEL:
            raise CustomLLMError(400, f"{PROVIDER}/{NOSTREAM_MODEL} does not support streaming")
        messages = kwargs["messages"]
        params = kwargs.get("optional_params") or {}
        reply = _reply(messages, params)
        # The pace comes with each request (``offline_tps`` of the client's settings): the
        # provider is registered once for the whole process, whatever the settings.
        extra = params.get("extra_body") or {}
        tps = float(extra.get("tps", DEFAULT_OFFLINE_TPS))
        tick = float(extra.get("tick", DEFAULT_OFFLINE_TICK))
        words = split_words(reply)
        if tps <= 0:
            for index, word in enumerate(words):
                if index % 64 == 63:
                    await anyio.lowlevel.checkpoint()  # let the loop breathe at full speed
                yield _chunk(word)
        elif tick <= 0:
            for word in words:  # a chunk a word, each after its own wait
                await anyio.sleep(1.0 / tps)
                yield _chunk(word)
        else:
            # Paced per tick, not per token: each chunk carries the words due since the last
            # one, on a fixed schedule (no drift), so the reply advances at ``tps`` with one
            # timer and one chunk through LiteLLM per tick rather than per token. Ten ticks
            # a second (the default) read as a steady flow; every chunk costs the server
            # about the same whatever it carries.
            per_chunk = max(1, round(tps * tick))
            interval = per_chunk / tps
            due = anyio.current_time()
            for at in range(0, len(words), per_chunk):
                due += interval
                await anyio.sleep_until(due)
                yield _chunk("".join(words[at : at + per_chunk]))
        yield {
            "text": "",
            "is_finished": True,
            "finish_reason": "stop",
            "usage": _usage(messages, reply),
            "index": 0,
            "tool_use": None,
        }
