"""The embedded offline model's writing: each archetype's voice, composed without a network.

Pure functions only; :mod:`psyche_sse.llm.offline` wraps them as a LiteLLM provider. The reply
reflects the situation, quotes what another agent said, remembers earlier rounds, and varies
with the seed.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..prompts import MEMORY_HEADER, OTHERS_HEADER, PROMPT_AGENT_MARK, SITUATION_HEADER


@dataclass(frozen=True)
class Voice:
    """What an archetype says: one opening, three of the middle, one closing."""

    opening: tuple[str, ...]
    middle: tuple[str, ...]
    closing: tuple[str, ...]


_SHADOW = Voice(
    opening=(
        "Be honest about {topic}: part of you is furious, and tired of pretending otherwise.",
        "Underneath {topic} there is envy you would rather not name.",
        "You keep calling {topic} a setback, but what burns is the humiliation.",
        "I am the part of you that wants to slam the door over {topic}.",
        "Nobody sees the resentment you carry about {topic}, but I do.",
    ),
    middle=(
        "That anger is not a flaw; it is information about what you want and were denied.",
        "You smile in public and rehearse cutting remarks in private.",
        "Some of you wants them to fail, and that wish is ugly but real.",
        "Swallowing it makes it leak out sideways, in sarcasm and sleepless nights.",
        "The hunger for recognition is yours, even if you were taught it is vain.",
        "If you deny me, I will drive the car while you think you are steering.",
    ),
    closing=(
        "What would you do if nobody could judge you for it?",
        "Which desire are you most ashamed to admit here?",
        "Whose failure would secretly please you?",
    ),
)

_PERSONA = Voice(
    opening=(
        "How {topic} looks matters, and right now people are watching how you carry it.",
        "Professionally, {topic} is a moment to show composure rather than hurt.",
        "Your reputation will be shaped less by {topic} than by how you respond to it.",
        "There is an expected script for {topic}, and you know it well.",
    ),
    middle=(
        "A gracious word to the right people keeps doors open.",
        "Nobody needs to see the disappointment; they need to see reliability.",
        "Norms exist for a reason: they protect you while you regroup.",
        "Ask for feedback in a way that sounds curious, not wounded.",
        "The mask is not a lie; it is a courtesy you extend to others and to yourself.",
        "Be careful that the polished answer does not become the only answer you have.",
    ),
    closing=(
        "What impression do you want to leave a month from now?",
        "Who do you need to be seen as, and is that who you are?",
        "Which conversation would protect your standing best this week?",
    ),
)

_ANIMA_ANIMUS = Voice(
    opening=(
        "Beneath {topic} I feel a quieter ache, like a door closing on a room you loved.",
        "{Topic} stirs something older than this one event.",
        "I sense grief in {topic}, softer than anger and more honest.",
        "There is an image in {topic}: you at a window, waiting to be chosen.",
    ),
    middle=(
        "Your intuition noticed the distance long before the news arrived.",
        "Feeling this fully is not weakness; it is how the psyche digests loss.",
        "Let the dream-logic speak: what did this role symbolise for you?",
        "There is longing here for work that feels alive, not merely approved.",
        "I carry what you do not let yourself feel by day, and I bring it back in dreams.",
        "Tenderness toward yourself may open what effort alone cannot.",
    ),
    closing=(
        "What does your heart whisper when the noise dies down?",
        "If this loss were a dream, what would it be trying to show you?",
        "Where in your body do you feel this, and what does it ask for?",
    ),
)

_SELF = Voice(
    opening=(
        "{Topic} is one moment in a much longer story of becoming whole.",
        "I hold both the anger and the composure that {topic} has called up in you.",
        "Seen from the centre, {topic} is an invitation rather than a verdict.",
        "Every voice here about {topic} is part of you, and none of them is all of you.",
    ),
    middle=(
        "Integration means letting the wounded part and the capable part sit at one table.",
        "The opposites you feel are not a contradiction to solve but a tension to hold.",
        "Individuation rarely follows the path that others approve of.",
        "What looks like a detour may be the psyche correcting its course.",
        "Meaning grows where you stop choosing between pride and honesty.",
        "You are larger than the role you did not get.",
    ),
    closing=(
        "What would wholeness look like here, rather than victory?",
        "Which part of you has been waiting longest to be heard?",
        "What is this asking you to grow into?",
    ),
)

_EGO = Voice(
    opening=(
        "Let's look at {topic} plainly and decide what to do next.",
        "Here are the facts of {topic} as far as we know them.",
        "{Topic} happened; the useful question is what you control now.",
        "I will weigh what the others have said about {topic} and choose a course.",
    ),
    middle=(
        "First, ask for specific feedback on what the decision rested on.",
        "Second, write down what you want in the next twelve months, not the next twelve days.",
        "Give the feelings a day, then act on a plan rather than a mood.",
        "If the gap is a skill, it can be learned; if it is politics, navigate it or leave.",
        "Set one concrete step for this week and one check-in date for next month.",
        "Keep the anger as fuel, the composure as method, and the grief as a guide.",
    ),
    closing=(
        "What is the one step you will take before Friday?",
        "Which option can you test cheaply this week?",
        "What decision would you defend to yourself a year from now?",
    ),
)

_VOICES: Mapping[str, Voice] = MappingProxyType(
    {
        "Shadow": _SHADOW,
        "Persona": _PERSONA,
        "Anima/Animus": _ANIMA_ANIMUS,
        "Self": _SELF,
        "Ego": _EGO,
    }
)

_PRONOUNS = MappingProxyType(
    {
        "i": "you",
        "me": "you",
        "my": "your",
        "mine": "yours",
        "myself": "yourself",
        "i'm": "you're",
        "i've": "you've",
        "i'll": "you'll",
        "i'd": "you'd",
        "am": "are",
        "we": "you",
        "our": "your",
        "us": "you",
    }
)


@dataclass
class PromptView:
    """What the offline model reads back out of a council prompt."""

    agent_id: str = "Self"
    situation: str = ""
    others: list[tuple[str, str]] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)


def read_prompt(messages: list[dict[str, object]]) -> PromptView:
    text = "\n".join(str(m.get("content") or "") for m in messages)
    view = PromptView()
    agent = re.search(re.escape(PROMPT_AGENT_MARK) + r"\s*([^\n.,]+)", text)
    if agent and agent.group(1).strip() in _VOICES:
        view.agent_id = agent.group(1).strip()
    sections = _sections(text)
    view.situation = sections.get(SITUATION_HEADER, "").strip() or text.strip()[-400:]
    for line in sections.get(OTHERS_HEADER, "").splitlines():
        name, sep, said = line.lstrip("- ").partition(": ")
        if sep and said.strip():
            view.others.append((name.strip(), said.strip()))
    view.memory = [
        ln.lstrip("- ").strip() for ln in sections.get(MEMORY_HEADER, "").splitlines() if ln.strip()
    ]
    return view


def _sections(text: str) -> dict[str, str]:
    headers = (SITUATION_HEADER, OTHERS_HEADER, MEMORY_HEADER)
    out: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in headers:
            current = stripped
            out[current] = ""
        elif current is not None and stripped.startswith("##"):
            current = None
        elif current is not None:
            out[current] += line + "\n"
    return out


def topic_of(situation: str, max_words: int = 12) -> str:
    """The situation's first clause, turned to the second person: 'I lost my job' -> 'you lost
    your job'."""
    first = re.split(r"(?<=[.!?;])\s|\n", situation.strip(), maxsplit=1)[0].rstrip(".!?;")
    words = first.split()[:max_words]
    swapped = [_swap(w) for w in words]
    for i in range(1, len(swapped)):
        if swapped[i - 1] == "you" and swapped[i] == "was":
            swapped[i] = "were"
    phrase = " ".join(swapped) or "this"
    return f"how {phrase}" if swapped and swapped[0] == "you" else f"'{phrase}'"


def _swap(word: str) -> str:
    core = word.strip(",:\"'()").lower()
    if core in _PRONOUNS:
        return word.lower().replace(core, _PRONOUNS[core])
    return word


def compose(view: PromptView, seed: int | None = None) -> str:
    """A short paragraph in the agent's voice."""
    voice = _VOICES.get(view.agent_id, _VOICES["Self"])
    digest = hashlib.sha256(
        f"{seed}|{view.agent_id}|{view.situation}|{len(view.memory)}".encode()
    ).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    topic = topic_of(view.situation)
    opener = rng.choice(voice.opening)
    sentences = [opener.format(topic=topic, Topic=topic[:1].upper() + topic[1:])]
    if view.others:
        name, said = rng.choice(view.others)
        fragment = _fragment(said, rng)
        if fragment:
            sentences.append(
                rng.choice(
                    [
                        f'{name} says "{fragment}", and I hear something else in it.',
                        f'When {name} says "{fragment}", I notice what is left unsaid.',
                        f'{name} is right that "{fragment}", but that is not the whole of it.',
                    ]
                )
            )
    if view.memory:
        sentences.append("This echoes what came up before, and the pattern is worth noticing.")
    # Kept in written order, so that an enumerated voice ("First, ... Second, ...") reads right.
    picks = sorted(rng.sample(range(len(voice.middle)), k=3))
    sentences.extend(voice.middle[i] for i in picks)
    sentences.append(rng.choice(voice.closing))
    return " ".join(sentences)


def _fragment(said: str, rng: random.Random, max_words: int = 9) -> str:
    """A short sentence of what another agent said, clipped at a word boundary."""
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+", said.replace('"', "'")) if x.strip()]
    if not sentences:
        return ""
    words = rng.choice(sentences).rstrip(".!?").split()
    clipped = " ".join(words[:max_words])
    return clipped + ("…" if len(words) > max_words else "")
