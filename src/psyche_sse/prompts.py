"""The council's prompts. The section headers are shared with the offline model, which reads
its prompt back the way a real model would."""

from __future__ import annotations

from collections.abc import Sequence

from .archetypes import Archetype

PROMPT_AGENT_MARK = "You are"
SITUATION_HEADER = "## Situation"
STIMULUS_HEADER = "## New development"
LEFT_OFF_HEADER = "## Where the council left it"
OTHERS_HEADER = "## What the others said"
MEMORY_HEADER = "## Earlier in this conversation"
GUIDANCE_HEADER = "## Guidance"


def build_messages(
    agent: Archetype,
    situation: str,
    *,
    memory: Sequence[tuple[str, str]] = (),
    others: Sequence[tuple[str, str]] = (),
    guidance: Sequence[str] = (),
    stimulus: str | None = None,
    left_off: str | None = None,
) -> list[dict[str, str]]:
    """System and user messages for one agent's turn.

    ``situation`` is what the person described, ``stimulus`` what they added for this round,
    ``left_off`` a line on where the previous round ended; ``memory`` is this agent's earlier
    (situation, reply) pairs, ``others`` the latest reply of each agent it can hear,
    ``guidance`` the lines the conversation's state calls for.
    """
    system = (
        f"{PROMPT_AGENT_MARK} {agent.agent_id}, one of five Jungian archetypes in a council "
        f"that helps a person reflect on their situation. You embody {agent.role}. "
        f"Your voice is {agent.voice}. Speak in the first person as {agent.agent_id}, "
        "address the person as 'you', and stay in character."
    )
    parts = []
    if stimulus:
        parts += [STIMULUS_HEADER, stimulus.strip(), ""]
    parts += [SITUATION_HEADER, situation.strip(), ""]
    if left_off:
        parts += [LEFT_OFF_HEADER, left_off.strip(), ""]
    if memory:
        parts.append(MEMORY_HEADER)
        parts.extend(f"- On '{_clip(s, 120)}' you said: {_clip(r, 400)}" for s, r in memory)
        parts.append("")
    if others:
        parts.append(OTHERS_HEADER)
        parts.extend(f"- {name}: {_clip(text, 600)}" for name, text in others)
        parts.append("")
    if guidance:
        parts.append(GUIDANCE_HEADER)
        parts.extend(f"- {line}" for line in guidance)
        parts.append("")
    parts.append(
        f"Answer as {agent.agent_id} in one short paragraph (at most 120 words), responding to "
        "the situation and to what the others said, and end with a question for the person."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(parts)}]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
