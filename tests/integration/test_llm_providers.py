"""The LLM layer through LiteLLM against fake provider servers on 127.0.0.1.

The fakes speak OpenAI's and Ollama's real wire formats over real HTTP, so everything between
``LLMClient`` and the socket (LiteLLM, the OpenAI SDK, aiohttp) is the code that runs in
production. Faults are injected on the server; each test checks what the client made of them
and what the server saw.
"""

from __future__ import annotations

import math
import socket
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import pytest

from psyche_sse.config import Settings, StreamingMode
from psyche_sse.engine import Engine
from psyche_sse.events import Event
from psyche_sse.llm import (
    CompletionRequest,
    LLMClient,
    LLMError,
    ModelUnavailable,
    Reply,
    StreamBroken,
    check_model,
)
from tests.factories import AGENT_IDS
from tests.fakes import DEFAULT_REPLY, Connections, FakeProvider, guard_network

pytestmark = [
    pytest.mark.anyio,
    # LiteLLM's Ollama module warns about its own type hints when it is first imported.
    pytest.mark.filterwarnings("ignore:Items? .* `ReadOnly` qualifier:UserWarning"),
]

OPENAI = "openai/gpt-4o-mini"
WORDS = DEFAULT_REPLY.split(" ")
PIECES = [w + " " for w in WORDS[:-1]] + [WORDS[-1]]


def settings_for(fake: FakeProvider, model: str = OPENAI, **changes: Any) -> Settings:
    """Settings that keep every test fast: tiny backoff, short timeouts, no pacing."""
    api_base = fake.openai_base if model.startswith("openai/") else fake.url
    values: dict[str, Any] = {
        "model": model,
        "api_base": api_base,
        "retry_attempts": 3,
        "retry_base": 0.01,
        "retry_cap": 0.05,
        "timeout_total": 10.0,
        "timeout_first_token": 5.0,
        "timeout_idle": 5.0,
        "simulated_delay": 0.0,
        "db": ":memory:",
    }
    values.update(changes)
    return Settings(**values)


def request(model: str = OPENAI) -> CompletionRequest:
    return CompletionRequest(
        model=model,
        messages=[
            {"role": "system", "content": "You are the Shadow."},
            {"role": "user", "content": "I was passed over for promotion."},
        ],
        temperature=0.9,
        max_tokens=120,
    )


@dataclass
class Outcome:
    pieces: list[str]
    reply: Reply
    error: LLMError | None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


async def complete(
    settings: Settings,
    model: str | None = None,
    *,
    mode: StreamingMode | None = None,
    client: LLMClient | None = None,
) -> Outcome:
    """One completion through ``LLMClient``, its failure caught."""
    own = client is None
    llm = client or LLMClient(settings)
    pieces: list[str] = []
    error: LLMError | None = None
    try:
        async with llm.stream(request(model or settings.model), mode) as stream:
            try:
                async for text in stream:
                    pieces.append(text)
            except LLMError as exc:
                error = exc
    finally:
        if own:
            await llm.close()
    return Outcome(pieces, stream.reply, error)


def chat_log(fake: FakeProvider) -> list[tuple[bool, int]]:
    """(stream flag, status) of every chat request the server saw."""
    return [(r.stream, r.status) for r in fake.chats]


# --- the round protocol, checked on every Engine test -----------------------------------


def check_turns(events: list[Event]) -> list[dict[str, Any]]:
    """Every started has exactly one complete; text and progress add up. Returns the turns."""
    turns: dict[str, dict[str, Any]] = {}
    text: dict[str, str] = defaultdict(str)
    progress: dict[str, float] = defaultdict(float)
    for e in events:
        d = e.data
        if e.type == "agent_processing_started":
            tid = d["metadata"]["turn_id"]
            assert tid not in turns
            turns[tid] = {"agent": d["agent_id"], "completes": 0, "updates": 0}
        elif e.type == "agent_processing_update":
            tid = d["metadata"]["turn_id"]
            assert turns[tid]["completes"] == 0, "no update after complete"
            turns[tid]["updates"] += 1
            turns[tid].setdefault("modes", set()).add(d["metadata"]["streaming"])
            text[tid] += d["partial_content"]
            assert progress[tid] <= d["progress"] < 1.0
            progress[tid] = d["progress"]
        elif e.type == "agent_processing_complete":
            tid = d["metadata"]["turn_id"]
            turn = turns[tid]
            turn["completes"] += 1
            turn.update(final=d["final_content"], meta=d["metadata"], streamed=text[tid])
            assert d["metadata"]["progress"] == 1.0
            if d["metadata"]["status"] == "ok":
                assert d["final_content"] == text[tid]
            elif d["metadata"]["status"] == "error" and text[tid]:
                # A failed turn keeps its partial text, and says on a line of its own that it
                # was cut off.
                kept, marker = (
                    d["final_content"][: len(text[tid])],
                    d["final_content"][len(text[tid]) :],
                )
                assert kept == text[tid], "a failed turn keeps its partial text"
                assert marker.startswith(f"\n\n[{d['agent_id']}'s reply was cut off"), marker
                assert marker.endswith("]") and "\n" not in marker.strip()
            elif text[tid]:
                assert d["final_content"] == text[tid], "a stopped turn keeps its partial text"
    assert all(t["completes"] == 1 for t in turns.values()), turns
    return list(turns.values())


async def run_round(settings: Settings, situation: str = "I was passed over") -> list[Event]:
    async with Engine(settings) as engine:
        session, round_id, text = engine.rounds.prepare(situation)
        await engine.rounds.run(session, round_id, text)
        events = await engine.bus.history(session.id)
    # A run opens with who hears whom; a round ends with the conversation's state.
    assert events[0].type == "network_update" and events[-1].type == "conversation_state"
    return [e for e in events if e.type.startswith(("round_", "agent_"))]


# --- native streaming -------------------------------------------------------------------


async def test_openai_native_streaming(fake: FakeProvider, network: Connections) -> None:
    out = await complete(settings_for(fake, streaming="native"))
    assert out.error is None
    assert out.pieces == PIECES
    assert out.reply.text == DEFAULT_REPLY
    assert out.reply.streaming == "native"
    assert out.reply.attempts == 1
    assert out.reply.usage == {"prompt_tokens": 10, "completion_tokens": 15, "total_tokens": 25}
    assert out.reply.first_token_ms is not None
    [seen] = fake.requests
    assert seen.path == "/v1/chat/completions" and seen.finished and not seen.disconnected
    assert seen.body["model"] == "gpt-4o-mini" and seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}
    assert seen.body["temperature"] == 0.9 and seen.body["max_tokens"] == 120
    assert seen.headers["authorization"] == "Bearer sk-test-not-a-real-key"
    assert seen.headers.get("x-stainless-retry-count", "0") == "0"


@pytest.mark.parametrize(
    ("model", "path"),
    [("ollama_chat/llama3", "/api/chat"), ("ollama/llama3", "/api/generate")],
)
async def test_ollama_native_streaming(
    fake: FakeProvider, network: Connections, model: str, path: str
) -> None:
    out = await complete(settings_for(fake, model, streaming="native"))
    assert out.error is None
    assert out.pieces == PIECES and out.reply.streaming == "native"
    assert out.reply.usage and out.reply.usage["completion_tokens"] == 15
    assert [(r.path, r.stream, r.finished) for r in fake.requests] == [(path, True, True)]
    assert fake.requests[0].body["model"] == "llama3"


@pytest.mark.parametrize("mode", ["native", "simulated"])
async def test_an_ollama_model_litellm_does_not_know_stays_on_api_base(
    fake: FakeProvider, network: Connections, mode: StreamingMode
) -> None:
    # LiteLLM looks such models up with /api/show, partly on localhost:11434 whatever the
    # api_base; and "llama-3" in a name makes it reach for a tokenizer hub. Neither may leave.
    model = "ollama_chat/llama-3.1-8b-fake"
    out = await complete(settings_for(fake, model, streaming=mode))
    assert out.error is None and out.reply.text == DEFAULT_REPLY
    assert [r.path for r in fake.requests] == ["/api/chat"]
    assert network.connects and not network.elsewhere(("127.0.0.1", fake.port))


async def test_openai_compatible_llama_name_needs_no_tokenizer_download(
    fake: FakeProvider, network: Connections
) -> None:
    with anyio.fail_after(30):
        out = await complete(settings_for(fake, "openai/meta-llama-3-8b-instruct"))
    assert out.error is None and out.reply.text == DEFAULT_REPLY


@pytest.mark.parametrize("model", [OPENAI, "ollama_chat/llama3"])
async def test_think_tags_split_across_chunks(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    fake.behave(pieces=("<thi", "nk>weighing ", "it up</th", "ink>\n\nThe answer", " is here."))
    out = await complete(settings_for(fake, model))
    assert out.error is None
    assert out.text == out.reply.text == "The answer is here."
    assert out.reply.reasoning == "weighing it up"


@pytest.mark.parametrize("model", [OPENAI, "ollama_chat/llama3"])
async def test_reasoning_the_protocol_carries_apart(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    fake.behave(reasoning=("Hmm, ", "let me see."), pieces=("Plain ", "answer."))
    out = await complete(settings_for(fake, model))
    assert out.error is None
    assert out.pieces == ["Plain ", "answer."] and out.reply.text == "Plain answer."
    assert out.reply.reasoning == "Hmm, let me see."


# --- simulated streaming ----------------------------------------------------------------


async def test_a_provider_that_cannot_stream_is_streamed_by_simulation(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(refuse_stream=True, reply=" ".join(f"word{i}" for i in range(40)))
    settings = settings_for(fake, simulated_chunks=10)
    client = LLMClient(settings)
    try:
        first = await complete(settings, client=client)
        assert first.error is None
        assert first.reply.streaming == "simulated"
        assert len(first.pieces) == 10
        assert first.text == first.reply.text == fake.behaviour.reply
        assert chat_log(fake) == [(True, 400), (False, 200)]
        # The client remembers: the next turn asks without streaming straight away.
        second = await complete(settings, client=client)
        assert second.reply.streaming == "simulated" and second.error is None
        assert chat_log(fake)[2:] == [(False, 200)]
    finally:
        await client.close()


async def test_native_mode_does_not_fall_back(fake: FakeProvider, network: Connections) -> None:
    fake.behave(refuse_stream=True)
    out = await complete(settings_for(fake, streaming="native"))
    assert out.error is not None and out.error.error_class == "BadRequestError"
    assert not out.error.retryable and out.reply.attempts == 1
    assert out.pieces == [] and chat_log(fake) == [(True, 400)]


async def test_simulated_mode_asks_once_without_streaming(
    fake: FakeProvider, network: Connections
) -> None:
    out = await complete(settings_for(fake, streaming="simulated", simulated_delay=0.001))
    assert out.error is None and out.reply.streaming == "simulated"
    assert out.text == DEFAULT_REPLY and 5 <= len(out.pieces) <= 10
    assert out.reply.usage and out.reply.usage["completion_tokens"] == 15
    assert chat_log(fake) == [(False, 200)]


# --- retries ----------------------------------------------------------------------------


async def test_rate_limited_then_served_is_retried_and_counted(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(fail=(429,))
    out = await complete(settings_for(fake))
    assert out.error is None and out.text == DEFAULT_REPLY
    assert out.reply.attempts == 2 and out.reply.streaming == "native"
    # A rate limit is waited out, not answered with a second, non-streaming request.
    assert chat_log(fake) == [(True, 429), (True, 200)]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_failing_server_is_retried_up_to_the_limit(
    fake: FakeProvider, network: Connections, status: int
) -> None:
    fake.behave(fail_always=status)
    out = await complete(settings_for(fake, streaming="native", retry_attempts=3))
    assert out.error is not None and out.error.retryable
    assert out.reply.attempts == 3
    assert chat_log(fake) == [(True, status)] * 3
    assert out.pieces == [] and out.reply.text == ""


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
    ],
)
async def test_client_errors_are_not_retried(
    fake: FakeProvider, network: Connections, status: int, error_class: str
) -> None:
    fake.behave(fail_always=status)
    out = await complete(settings_for(fake, streaming="native"))
    assert out.error is not None and not out.error.retryable
    assert out.error.error_class == error_class
    assert isinstance(out.error, ModelUnavailable) == (status != 400)
    assert out.reply.attempts == 1 and len(fake.chats) == 1


async def test_a_status_litellm_swallows_is_still_an_error(
    fake: FakeProvider, network: Connections
) -> None:
    # LiteLLM answers a 422 from an OpenAI-compatible server with None instead of raising
    # (after asking twice, on its own).
    fake.behave(fail_always=422)
    out = await complete(settings_for(fake))
    assert out.error is not None and out.error.error_class == "EmptyResponse"
    assert not out.error.retryable and out.reply.attempts == 1
    assert {status for _, status in chat_log(fake)} == {422}
    assert [stream for stream, _ in chat_log(fake)][-1] is False  # auto tried without streaming


async def test_a_bad_key_is_not_retried_in_auto_mode_either(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(fail_always=401)
    out = await complete(settings_for(fake))
    assert isinstance(out.error, ModelUnavailable)
    assert chat_log(fake) == [(True, 401)]
    assert "sk-test" not in out.error.message


@pytest.mark.parametrize(
    ("model", "path", "error_class"),
    [
        # LiteLLM reports a refused connection to an OpenAI-compatible server this way.
        (OPENAI, "/v1", "InternalServerError"),
        ("ollama_chat/llama3", "", "APIConnectionError"),
    ],
)
async def test_a_refused_connection_is_retried(
    monkeypatch: pytest.MonkeyPatch, model: str, path: str, error_class: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    network = guard_network(monkeypatch)
    # A port with nothing listening: bound, never listened on, so nobody else can take it.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        settings = Settings(
            model=model,
            api_base=f"http://127.0.0.1:{port}{path}",
            streaming="native",
            retry_attempts=2,
            retry_base=0.01,
        )
        with anyio.fail_after(30):
            out = await complete(settings)
    assert out.error is not None and out.error.retryable
    assert out.error.error_class == error_class
    assert out.reply.attempts == 2
    # (LiteLLM's own HTTP handler, used for Ollama, retries a refused connection once.)
    assert set(network.connects) == {("127.0.0.1", port)} and len(network.connects) >= 2


# --- timeouts ---------------------------------------------------------------------------


async def test_no_first_token_in_time_times_out_and_hangs_up(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(first_token_delay=math.inf)
    # Long enough for each attempt's request to reach the fake on a busy machine: the test
    # counts them there.
    settings = settings_for(fake, streaming="native", retry_attempts=2, timeout_first_token=1.0)
    # The fake never sends a first token: only the timeout can end the call.
    with anyio.fail_after(30):
        out = await complete(settings)
    assert out.error is not None and out.error.error_class == "Timeout"
    assert out.reply.attempts == 2  # a timeout before the first token is worth a retry
    await fake.until(lambda rs: len(rs) == 2 and all(r.disconnected for r in rs), 10)


async def test_a_slow_first_token_within_the_limit_is_fine(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(first_token_delay=0.2)
    out = await complete(settings_for(fake, timeout_first_token=3))
    assert out.error is None and out.text == DEFAULT_REPLY
    assert out.reply.first_token_ms is not None and out.reply.first_token_ms >= 200


async def test_auto_falls_back_when_no_first_token_comes(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(first_token_delay=math.inf)
    out = await complete(settings_for(fake, retry_attempts=1, timeout_first_token=0.3))
    # The stream never started; the same server answers a plain request at once.
    assert out.error is None and out.reply.streaming == "simulated"
    assert out.text == DEFAULT_REPLY
    assert chat_log(fake) == [(True, 200), (False, 200)]
    await fake.until(lambda rs: rs[0].disconnected, 3)


async def test_a_stalled_stream_times_out_and_keeps_the_partial_text(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(hold_after=3)
    out = await complete(settings_for(fake, timeout_idle=0.3))
    assert isinstance(out.error, StreamBroken) and out.error.error_class == "Timeout"
    assert out.pieces == PIECES[:3] and out.error.partial == "".join(PIECES[:3])
    assert out.reply.attempts == 1 and len(fake.chats) == 1  # no retry after the first token
    await fake.until(lambda rs: rs[0].disconnected, 3)


async def test_the_whole_turn_has_a_deadline(fake: FakeProvider, network: Connections) -> None:
    fake.behave(chunk_delay=0.1)
    out = await complete(settings_for(fake, timeout_total=0.5, timeout_idle=5))
    assert isinstance(out.error, StreamBroken) and out.error.error_class == "Timeout"
    assert 0 < len(out.pieces) < len(PIECES)
    await fake.until(lambda rs: rs[0].disconnected, 3)


# --- a stream that breaks, a turn that is cancelled -------------------------------------


@pytest.mark.parametrize("model", [OPENAI, "ollama_chat/llama3"])
async def test_a_stream_cut_mid_way_fails_with_the_partial_text(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    fake.behave(cut_after=4)
    out = await complete(settings_for(fake, model))
    assert isinstance(out.error, StreamBroken)
    assert out.pieces == PIECES[:4] and out.reply.text == "".join(PIECES[:4])
    assert out.error.partial == out.reply.text
    assert out.reply.attempts == 1 and len(fake.chats) == 1


ALL_WIRES = [OPENAI, "ollama_chat/llama3", "ollama/llama3"]


@pytest.mark.parametrize("model", ALL_WIRES)
async def test_a_stream_that_ends_without_finishing_fails_with_the_partial_text(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    # The server ends the response properly, mid-reply: no finish reason, no [DONE] (no
    # "done": true for Ollama). LiteLLM makes up a finish of its own; it is not one.
    fake.behave(clean_cut=(4,))
    out = await complete(settings_for(fake, model))
    assert isinstance(out.error, StreamBroken)
    assert out.error.error_class == "IncompleteStream"
    assert out.pieces == PIECES[:4] and out.reply.text == "".join(PIECES[:4])
    assert out.error.partial == out.reply.text
    assert out.reply.attempts == 1 and len(fake.chats) == 1  # no retry after the first token
    [seen] = fake.chats
    assert seen.finished and not seen.disconnected and seen.chunks_sent == 4


@pytest.mark.parametrize("model", ALL_WIRES)
async def test_a_stream_that_ends_before_its_first_token_is_retried(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    fake.behave(clean_cut=(0,))
    out = await complete(settings_for(fake, model, streaming="native"))
    assert out.error is None and out.text == out.reply.text == DEFAULT_REPLY
    assert out.reply.attempts == 2 and out.reply.streaming == "native"
    assert chat_log(fake) == [(True, 200), (True, 200)]
    assert [r.chunks_sent for r in fake.chats] == [0, len(PIECES)]


async def test_streams_that_keep_ending_before_their_first_token_fail_retryably(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(clean_cut=(0, 0, 0))
    out = await complete(settings_for(fake, streaming="native", retry_attempts=3))
    assert out.error is not None and not isinstance(out.error, StreamBroken)
    assert out.error.error_class == "IncompleteStream" and out.error.retryable
    assert out.reply.attempts == 3 and out.pieces == [] and out.reply.text == ""
    assert chat_log(fake) == [(True, 200)] * 3


async def test_auto_falls_back_when_a_stream_ends_before_its_first_token(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(clean_cut=(0,))
    out = await complete(settings_for(fake))
    assert out.error is None and out.reply.streaming == "simulated"
    assert out.text == DEFAULT_REPLY
    assert chat_log(fake) == [(True, 200), (False, 200)]


@pytest.mark.parametrize("model", [OPENAI, "ollama_chat/llama3"])
async def test_an_empty_reply_that_finishes_is_not_a_cut(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    fake.behave(pieces=())
    out = await complete(settings_for(fake, model, streaming="native"))
    assert out.error is None and out.pieces == [] and out.reply.text == ""
    assert out.reply.attempts == 1 and len(fake.chats) == 1


@pytest.mark.parametrize("model", [OPENAI, "ollama_chat/llama3"])
async def test_cancelling_a_turn_closes_the_connection_at_once(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    fake.behave(hold_after=2)
    client = LLMClient(settings_for(fake, model))
    got: list[str] = []
    two = anyio.Event()

    async def consume() -> None:
        async with client.stream(request(model)) as stream:
            async for text in stream:
                got.append(text)
                if len(got) == 2:
                    two.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(5):
                await two.wait()
            tg.cancel_scope.cancel()
        # The fake would go on sending: it is the cancellation that hangs up.
        await fake.until(lambda rs: rs[0].disconnected, 5)
        assert got == PIECES[:2] and fake.chats[0].chunks_sent == 2
    finally:
        await client.close()


# --- rate limit -------------------------------------------------------------------------


async def test_the_rate_limit_is_per_model(fake: FakeProvider, network: Connections) -> None:
    # One request per two seconds per model: a second request for the same model waits, while
    # a request for another model goes out at once.
    settings = settings_for(fake, rate_limit_rpm=30)
    client = LLMClient(settings)
    try:
        async with anyio.create_task_group() as tg:
            for model in ("openai/model-a", "openai/model-a", "openai/model-b"):
                tg.start_soon(partial(complete, settings, model, client=client))
                await anyio.wait_all_tasks_blocked()
            await fake.until(lambda rs: len(rs) == 2, 1.5)
            await anyio.wait_all_tasks_blocked()
            assert [r.body["model"] for r in fake.requests] == ["model-a", "model-b"]
            tg.cancel_scope.cancel()
    finally:
        await client.close()


# --- the offline model, through LiteLLM --------------------------------------------------


@pytest.mark.parametrize(
    ("model", "streaming"),
    [("psyche/offline", "native"), ("psyche/offline-nostream", "simulated")],
)
async def test_the_offline_model_goes_through_litellm(
    network: Connections, model: str, streaming: str
) -> None:
    out = await complete(Settings(model=model, offline_tps=0, simulated_delay=0))
    assert out.error is None and out.reply.streaming == streaming
    assert out.text == out.reply.text and len(out.reply.text.split()) > 10
    assert out.reply.usage and out.reply.attempts == 1
    assert network.connects == []  # it never touches the network


@pytest.mark.parametrize(("tps", "tick", "words"), [(1000, 0.01, 10), (400, 0.0, 1)])
async def test_the_paced_offline_model_sends_the_words_due_each_tick(
    network: Connections, tps: float, tick: float, words: int
) -> None:
    settings = Settings(model="psyche/offline", offline_tps=tps, offline_tick=tick)
    out = await complete(settings)
    assert out.error is None and out.reply.streaming == "native"
    # Every chunk but the last holds the words of one tick; together, the whole reply.
    assert [len(p.split()) for p in out.pieces[:-1]] == [words] * (len(out.pieces) - 1)
    assert 1 <= len(out.pieces[-1].split()) <= words
    assert "".join(out.pieces) == out.reply.text
    assert out.reply.usage and out.reply.usage["completion_tokens"] == len(out.text.split())


async def test_the_offline_nostream_model_refuses_native_mode(network: Connections) -> None:
    out = await complete(Settings(model="psyche/offline-nostream"), mode="native")
    assert out.error is not None and not out.error.retryable


# --- whole rounds: Engine, Council, MemoryBus -------------------------------------------


@pytest.mark.parametrize("model", [OPENAI, "ollama_chat/llama3"])
async def test_a_round_streams_natively(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    events = await run_round(settings_for(fake, model), "My sister borrowed money again")
    turns = check_turns(events)
    assert [t["agent"] for t in turns] == list(AGENT_IDS)
    for t in turns:
        assert t["meta"]["status"] == "ok" and t["final"] == DEFAULT_REPLY
        assert t["meta"]["streaming"] == "native" and t["modes"] == {"native"}
        assert t["meta"]["attempts"] == 1 and t["meta"]["usage"]
        assert t["updates"] == len(PIECES)
    assert len(fake.chats) == 5
    assert all("My sister borrowed money again" in str(r.body) for r in fake.chats)
    assert events[-1].data["status"] == "ok"


async def test_a_round_on_a_provider_that_cannot_stream(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(refuse_stream=True)
    turns = check_turns(await run_round(settings_for(fake)))
    assert all(t["meta"]["status"] == "ok" for t in turns)
    assert all(t["meta"]["streaming"] == "simulated" for t in turns)
    assert all(t["modes"] == {"simulated"} for t in turns)
    # One refusal, then every turn asks without streaming.
    assert chat_log(fake) == [(True, 400)] + [(False, 200)] * 5


async def test_a_round_with_a_rate_limited_first_request(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(fail=(429,))
    turns = check_turns(await run_round(settings_for(fake)))
    assert [t["meta"]["attempts"] for t in turns] == [2, 1, 1, 1, 1]
    assert all(t["meta"]["status"] == "ok" for t in turns)
    assert len(fake.chats) == 6


async def test_a_round_on_a_broken_server_completes_every_turn_with_an_error(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(fail_always=500)
    events = await run_round(settings_for(fake, retry_attempts=2))
    turns = check_turns(events)
    for t in turns:
        meta = t["meta"]
        assert meta["status"] == "error"
        assert t["final"] == f"[{t['agent']} is experiencing technical difficulties]"
        assert meta["error_class"] == "InternalServerError"
        assert meta["attempts"] == 2 and meta["partial"] is False
        assert t["updates"] == 0
    # auto: each attempt tries streaming, then a plain request.
    assert chat_log(fake) == [(True, 500), (False, 500)] * 2 * 5
    assert events[-1].data["status"] == "error"


async def test_a_round_whose_streams_are_cut(fake: FakeProvider, network: Connections) -> None:
    fake.behave(cut_after=5)
    turns = check_turns(await run_round(settings_for(fake)))
    for t in turns:
        assert t["meta"]["status"] == "error" and t["meta"]["partial"] is True
        assert t["streamed"] == "".join(PIECES[:5])
        assert (
            t["final"] == t["streamed"] + f"\n\n[{t['agent']}'s reply was cut off by the provider]"
        )
    assert len(fake.chats) == 5


@pytest.mark.parametrize("model", [OPENAI, "ollama_chat/llama3"])
async def test_a_round_whose_streams_end_without_finishing(
    fake: FakeProvider, network: Connections, model: str
) -> None:
    fake.behave(clean_cut=(5,) * 5)
    events = await run_round(settings_for(fake, model))
    turns = check_turns(events)
    for t in turns:
        meta = t["meta"]
        assert meta["status"] == "error" and meta["partial"] is True
        assert meta["error_class"] == "IncompleteStream" and meta["attempts"] == 1
        assert t["streamed"] == "".join(PIECES[:5])
        assert (
            t["final"] == t["streamed"] + f"\n\n[{t['agent']}'s reply was cut off by the provider]"
        )
    assert len(fake.chats) == 5 and all(r.finished for r in fake.chats)
    assert events[-1].data["status"] == "error"


async def test_a_round_whose_first_stream_ends_before_its_first_token(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(clean_cut=(0,))
    turns = check_turns(await run_round(settings_for(fake, streaming="native")))
    assert [t["meta"]["attempts"] for t in turns] == [2, 1, 1, 1, 1]
    assert all(t["meta"]["status"] == "ok" and t["final"] == DEFAULT_REPLY for t in turns)
    assert len(fake.chats) == 6


async def test_a_round_without_first_tokens_times_out(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(first_token_delay=math.inf)
    # Long enough for each request to reach the fake on a loaded machine, which then never
    # sends a first token.
    settings = settings_for(fake, streaming="native", retry_attempts=1, timeout_first_token=1.0)
    turns = check_turns(await run_round(settings))
    assert {t["meta"]["error_class"] for t in turns} == {"Timeout"}
    assert {t["meta"]["status"] for t in turns} == {"error"}
    await fake.until(lambda rs: len(rs) == 5 and all(r.disconnected for r in rs), 5)


async def test_stopping_a_round_hangs_up_on_the_provider(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(hold_after=3)
    async with Engine(settings_for(fake)) as engine:
        session, _ = engine.rounds.start("I keep procrastinating")
        await fake.until(lambda rs: bool(rs) and rs[0].chunks_sent == 3, 5)
        with anyio.fail_after(5):
            async for batch in engine.bus.subscribe(session.id):
                if sum(e.type == "agent_processing_update" for e in batch) >= 1:
                    break
        assert await engine.rounds.stop(session.id)
        # The provider would hold the stream for ever: it is the stop that hangs up.
        await fake.until(lambda rs: rs[0].disconnected, 5)
        with anyio.fail_after(5):
            async for batch in engine.bus.subscribe(session.id):
                if any(e.type == "round_complete" for e in batch):
                    break
        events = await engine.bus.history(session.id)
    [turn] = check_turns(events)
    assert turn["meta"]["status"] == "cancelled"
    assert turn["final"] == turn["streamed"] and turn["streamed"]
    assert len(fake.chats) == 1


async def test_stopping_one_turn_lets_the_round_go_on(
    fake: FakeProvider, network: Connections
) -> None:
    fake.behave(chunk_delay=0.02)
    async with Engine(settings_for(fake)) as engine:
        session, _ = engine.rounds.start("I keep procrastinating")
        with anyio.fail_after(5):
            async for batch in engine.bus.subscribe(session.id):
                updates = [e for e in batch if e.type == "agent_processing_update"]
                if updates:
                    assert await engine.rounds.stop(session.id, updates[0].turn_id)
                    break
        await fake.until(lambda rs: rs[0].disconnected, 2)
        with anyio.fail_after(10):
            async for batch in engine.bus.subscribe(session.id):
                if any(e.type == "round_complete" for e in batch):
                    break
        events = await engine.bus.history(session.id)
    turns = check_turns(events)
    assert [t["meta"]["status"] for t in turns] == ["cancelled", "ok", "ok", "ok", "ok"]


# --- checking a model before a run ------------------------------------------------------


def test_check_model_accepts_a_routable_model_with_its_key(fake: FakeProvider) -> None:
    check_model(OPENAI)
    check_model("psyche/offline")
    check_model("psyche/offline-nostream")


@pytest.mark.parametrize("model", ["ollama_chat/llama3", "ollama/llama3"])
def test_check_model_accepts_ollama_with_or_without_a_base(
    network: Connections, model: str
) -> None:
    check_model(model)  # LiteLLM's default: the local Ollama
    check_model(model, "http://127.0.0.1:11434")
    assert network.connects == []


@pytest.mark.parametrize("model", ["no-such-model-anywhere", "nonsense/whatever", "psyche/nope"])
def test_check_model_refuses_an_unknown_model(model: str) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        check_model(model)
    message = caught.value.message
    assert "\n" not in message and model in message


def test_check_model_names_the_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelUnavailable) as caught:
        check_model(OPENAI)
    assert "OPENAI_API_KEY" in caught.value.message and "\n" not in caught.value.message
