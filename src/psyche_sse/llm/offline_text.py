"""The embedded offline model's writing: each archetype's voice, composed without a network.

Pure functions only; :mod:`psyche_sse.llm.offline` wraps them as a LiteLLM provider. The reply
reads the prompt back the way a real model would: it speaks to the situation's themes (a
sister's silence is not a promotion), reacts to a new development and to the guidance lines,
quotes another agent verbatim and never a quotation of a third, avoids what this agent already
said in earlier rounds, and varies with the seed while staying the same for the same prompt.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from ..prompts import (
    GUIDANCE_HEADER,
    LEFT_OFF_HEADER,
    MEMORY_HEADER,
    OTHERS_HEADER,
    PROMPT_AGENT_MARK,
    SITUATION_HEADER,
    STIMULUS_HEADER,
)

MIN_WORDS = 50
MAX_WORDS = 120

# --------------------------------------------------------------------------------------------
# Themes: what a situation is about, read from a few of its words.


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


@dataclass(frozen=True)
class SituationTheme:
    """A broad theme: the words that signal it, the people in it, and how to name it."""

    name: str
    words: frozenset[str]
    phrases: tuple[str, ...] = ()
    # Nouns for the person the theme is about, in the situation's own words ("sister").
    people: frozenset[str] = frozenset()
    # Who ``{who}`` is when the situation names nobody in ``people``.
    someone: str = "the people involved"
    # The topic when the situation's words cannot be turned into a clause; may use ``{who}``.
    topic: str = "what you are going through"


_THEMES: tuple[SituationTheme, ...] = (
    SituationTheme(
        "loss",
        _wordset(
            "funeral died dies death dead grief grieving mourning mourn bereavement buried "
            "widow widowed widower burial"
        ),
        phrases=("passed away", "lost my mother", "lost my father"),
        topic="this loss",
    ),
    SituationTheme(
        "health",
        _wordset(
            "health sick ill illness diagnosis diagnosed doctor doctors pain body weight sleep "
            "insomnia hospital surgery injury injured exhausted anxiety anxious panic depression "
            "depressed therapy therapist medication symptoms disease chronic"
        ),
        topic="what your body and mind are going through",
    ),
    SituationTheme(
        "partner",
        _wordset(
            "partner husband wife boyfriend girlfriend spouse marriage married divorce divorced "
            "dating relationship wedding fiance fiancee ex breakup cheated cheating affair"
        ),
        phrases=("broke up",),
        people=_wordset("partner husband wife boyfriend girlfriend spouse fiance fiancee ex"),
        someone="your partner",
        topic="what is happening between you and {who}",
    ),
    SituationTheme(
        "family",
        _wordset(
            "sister sisters brother brothers mother father mum mom dad parents parent family son "
            "daughter grandmother grandfather grandma grandpa aunt uncle cousin sibling siblings "
            "stepfather stepmother"
        ),
        # A child of one's own, not "wants a child": that is the partner's theme and a choice.
        phrases=(
            "in-laws",
            *(f"{a} {b}" for a in ("my", "our") for b in ("child", "children", "kids", "baby")),
        ),
        people=_wordset(
            "sister sisters brother brothers mother father mum mom dad parents son daughter "
            "grandmother grandfather grandma grandpa aunt uncle cousin siblings stepfather "
            "stepmother child children kids baby"
        ),
        someone="your family",
        topic="what is happening with {who}",
    ),
    SituationTheme(
        "friendship",
        _wordset("friend friends friendship roommate flatmate birthday"),
        phrases=("best friend",),
        people=_wordset("friend friends roommate flatmate"),
        someone="your friend",
        topic="what is happening with {who}",
    ),
    SituationTheme(
        "work",
        _wordset(
            "job jobs work working workplace boss manager promotion promoted career office "
            "colleague colleagues coworker coworkers fired layoff interview salary raise team "
            "client clients employer hired project deadline"
        ),
        phrases=("laid off", "took credit"),
        people=_wordset(
            "manager boss colleague colleagues coworker coworkers team client employer"
        ),
        someone="the people you work with",
        topic="what is happening at work",
    ),
    SituationTheme(
        "study",
        _wordset(
            "exam exams test tests school university college class classes grade grades thesis "
            "degree study studying studies teacher teachers professor course semester homework "
            "student"
        ),
        topic="how your studies are going",
    ),
    SituationTheme(
        "money",
        _wordset(
            "money debt debts loan loans rent mortgage savings afford bills broke budget "
            "paycheck spending expensive"
        ),
        topic="the money pressure you describe",
    ),
    SituationTheme(
        "decision",
        _wordset(
            "decide deciding decision choose choosing choice whether torn dilemma unsure "
            "undecided move moving abroad relocate quit quitting offer options"
        ),
        phrases=("not sure", "should i"),
        topic="the choice in front of you",
    ),
)
_GENERAL = SituationTheme("general", frozenset())


def themes_of(situation: str, limit: int = 3) -> tuple[SituationTheme, ...]:
    """The themes a situation's words point to, strongest first (ties in the order above)."""
    text = " ".join(_words(situation))
    tokens = text.split()
    scored = []
    for rank, theme in enumerate(_THEMES):
        hits = sum(t in theme.words for t in tokens)
        hits += sum(f" {p} " in f" {text} " for p in theme.phrases)
        if hits:
            scored.append((-hits, rank, theme))
    return tuple(theme for _, _, theme in sorted(scored, key=lambda s: s[:2])[:limit])


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:[-'][a-z]+)*", text.lower().replace("\u2019", "'"))


def _who(theme: SituationTheme, situation: str) -> str:
    """The person a theme is about, told to the person: 'my sister' -> 'your sister'. One of
    their own ('my', 'our') comes first: 'a child' may not exist yet."""
    words = _words(situation)
    owned = [w for before, w in zip(["", *words], words, strict=False) if before in ("my", "our")]
    for word in (*owned, *words):
        if word in theme.people:
            return f"your {word}"
    return theme.someone


# --------------------------------------------------------------------------------------------
# Voices: what each archetype says. ``{topic}`` is a noun phrase for the situation ("how you
# failed your exam again", "what is happening with your sister"); ``{who}`` the person a themed
# line is about; ``{name}`` another agent; ``{q}`` words quoted verbatim; ``{news}`` the new
# development as a clause ("your sister just texted you").


@dataclass(frozen=True)
class Voice:
    """What an archetype says, by the part of the reply a phrase plays."""

    opening: tuple[str, ...]
    middle: tuple[str, ...]
    closing: tuple[str, ...]
    themed: Mapping[str, tuple[str, ...]]
    themed_closing: Mapping[str, str]
    news: tuple[str, ...]
    news_quoted: tuple[str, ...]
    quote: tuple[str, ...]
    asks: tuple[str, ...]
    heard: tuple[str, ...]
    memory: tuple[str, ...]
    left_off: tuple[str, ...]
    guidance: Mapping[str, tuple[str, ...]]


def _map(**items: tuple[str, ...]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(items)


_SHADOW = Voice(
    opening=(
        "Let me be blunt about {topic}: part of you wants something you are not admitting.",
        "I am the part of you that does not stay polite about {topic}.",
        "When you think about {topic}, there is something you would rather not name, so I will.",
        "You keep telling a tidy story about {topic}; I know the other one.",
        "Nobody sees what you really carry about {topic}, but I do.",
        "When you speak about {topic}, I hear a hunger you keep pretending is not there.",
    ),
    middle=(
        "Anger is not a flaw here; it is information about what you want.",
        "You smile in public and rehearse the sharp replies in private.",
        "Swallowing it makes it leak out sideways, in sarcasm and sleepless nights.",
        "If you deny me, I will drive the car while you think you are steering.",
        "The wish you are ashamed of is still yours, and ignoring it will not make it leave.",
        "Part of you likes the story in which you are blameless, and that part deserves a look.",
        "What you call being reasonable is sometimes just being afraid.",
        "I am not here to be nice; I am here so you stop lying to yourself.",
    ),
    closing=(
        "What would you do if nobody could judge you for it?",
        "Which desire are you most ashamed to admit here?",
        "What are you angry about that you have not said out loud?",
        "Who are you protecting by staying quiet?",
        "What would the least polite version of you say right now?",
    ),
    themed=_map(
        work=(
            "Part of you wants {who} to see what they are missing, and that wish is not noble but "
            "it is real.",
            "You want the recognition badly, even if you were taught that wanting it is vain.",
            "What you feel about work may be less about the tasks than about being seen.",
        ),
        family=(
            "There is old resentment toward {who} that is older than all of this.",
            "You have played your part in this family so long you forget you can refuse it.",
            "Part of you is furious with {who} and guilty for being furious.",
        ),
        partner=(
            "There is something you want from {who} that you have not said out loud.",
            "Part of you keeps testing {who}, waiting to see whether you will be chosen.",
        ),
        friendship=(
            "You are hurt by {who}, and under the hurt there is a score you are keeping.",
            "Part of you wants {who} to feel exactly as small as you felt.",
        ),
        health=(
            "You are angry at your own body, and you treat that anger like a secret.",
            "Part of you wants to stop being brave about this and simply rage.",
        ),
        money=(
            "There is envy here about what others can afford, and shame about counting.",
            "You act as if money were beneath you, yet it keeps you awake.",
        ),
        loss=(
            "Grief has anger in it, and some of yours may be aimed at the one who is gone.",
            "You are allowed to be furious at how unfair this loss is.",
        ),
        study=(
            "Part of you wants to blame the test, the teachers, anything but your own fear.",
            "You are terrified of being ordinary, and that fear sits under every grade.",
        ),
        decision=(
            "You already know what you want; you are waiting for permission.",
            "One of these options scares you because it is the one you actually want.",
        ),
    ),
    themed_closing=MappingProxyType(
        {
            "work": "What would you want from work if nobody could call it greedy?",
            "family": "What have you never said to {who}?",
            "partner": "What do you want from {who} that you are afraid to ask for?",
            "friendship": "What do you want {who} to feel?",
            "health": "What would you say to your body if you stopped being polite?",
            "money": "What would you buy, or refuse to pay for, if nobody were watching?",
            "loss": "What are you angry about inside this grief?",
            "study": "What are you really afraid this result says about you?",
            "decision": "Which option do you want before you start being sensible?",
        }
    ),
    news=(
        "So {news}; good, now something real is on the table.",
        "{News}, and I can feel the old reflex to pretend it does not matter.",
        "And now {news}: watch what your gut did before your manners caught up.",
    ),
    news_quoted=(
        'You brought us "{q}", and I felt the jolt under it.',
        'Now there is this: "{q}". Your first reaction was not the polite one.',
    ),
    quote=(
        '{name} says "{q}"; fine, but that is the tidy version.',
        'When {name} says "{q}", I notice what it leaves out.',
        '{name} put it as "{q}", and that is the polite half of the truth.',
    ),
    asks=('{name} asks "{q}", and I would ask it less politely.',),
    heard=(
        "{name} has spoken, and I hear what it avoids.",
        "I heard {name}, and I am less polite about it.",
    ),
    memory=(
        "I have said this before, and you still have not looked at it.",
        "We have been here before; the same knot keeps coming back.",
        "This is not the first time I have pushed on this, and I will keep pushing.",
    ),
    left_off=(
        "Where we left it last round was too tidy, and nobody answered honestly.",
        "Last round ended too neatly for my taste.",
    ),
    guidance=_map(
        conflict=(
            "I am not fighting {name} for the sake of it; there is common ground, since we "
            "both want you to stop hiding.",
            "{name} and I sound opposed, but there is common ground: this matters more than "
            "you admit.",
        ),
        engagement=(
            "Here is something concrete: tonight, write down the one sentence you are most "
            "afraid to say, and read it aloud once, alone, without softening it.",
            "Try this before you sleep: name out loud the thing you want that you keep calling "
            "unimportant, then write down what you would do tomorrow if you took it seriously.",
        ),
        repetition=(
            "Here is a new angle, since we keep circling: perhaps what you fear is not failure "
            "but being seen wanting something.",
            "Let me say something new instead: the part of this you call unfair may be the part "
            "you chose.",
        ),
        stagnation=(
            "So here is a bolder proposal: stop managing this and say the unsayable thing to "
            "the person it belongs to, this week.",
            "Let me propose something different: for one day, do exactly what you want and "
            "watch what happens.",
        ),
        intensity=(
            "I will say it more quietly, because shouting will not help you hear it.",
            "Let me slow down; the heat in here makes it harder to see you.",
        ),
    ),
)

_PERSONA = Voice(
    opening=(
        "As you deal with {topic}, others will be watching, and I think that deserves "
        "some thought.",
        "When it comes to {topic}, there is an expected script, and I know you know it well.",
        "When people think about {topic}, I suspect they will remember your response more than "
        "the facts.",
        "Let me look at it the way the people around you will, when they hear about {topic}.",
        "You have two faces when it comes to {topic}, a public one and a private one, and I "
        "care about both.",
    ),
    middle=(
        "The mask is not a lie; it is a courtesy you extend to others and to yourself.",
        "Norms exist for a reason: they protect you while you regroup.",
        "Be careful that the polished answer does not become the only answer you have.",
        "A measured word now will spare you an apology later.",
        "People read tone before they read content, so choose your tone first.",
        "Composure buys you time; it does not have to mean pretending nothing happened.",
        "You can be gracious without being a doormat.",
        "What you share, with whom, and when, is a choice you get to make deliberately.",
    ),
    closing=(
        "What impression do you want to leave a month from now?",
        "Who do you need to be seen as, and is that who you are?",
        "What would you say if you knew it would be received kindly?",
        "Whose opinion are you really dressing up for here?",
    ),
    themed=_map(
        work=(
            "A gracious word to the right people keeps doors open.",
            "Whatever you say to {who}, say it so it sounds considered, not wounded.",
            "Your professional reputation is built in moments like this one.",
        ),
        family=(
            "Families keep their own scripts, and you have probably been cast in one for years.",
            "A calm, brief message to {who} says more than a long explanation.",
            "There is a difference between keeping the peace and keeping up appearances.",
        ),
        partner=(
            "What the two of you show your friends and what happens at home may have drifted "
            "apart.",
            "Speaking to {who} when you are both calm is its own kind of respect.",
        ),
        friendship=(
            "Friendships have unspoken rules, and one of them may have been broken.",
            "A light, warm message to {who} leaves room for both of you to save face.",
        ),
        health=(
            "You do not owe everyone an explanation of your health.",
            "Deciding who gets to know, and how much, is part of taking care of yourself.",
        ),
        money=(
            "There is no shame in saying plainly what you can and cannot afford.",
            "Keeping up with other people's spending is a performance that costs real money.",
        ),
        loss=(
            "Grief has its public rituals, and it is fine if yours does not match them.",
            "People will say clumsy things; you can accept the kindness behind them.",
        ),
        study=(
            "One result does not define how teachers and classmates see you.",
            "Asking for help early looks like seriousness, not weakness.",
        ),
        decision=(
            "Notice how much of this choice is about what others will think of you.",
            "Whatever you choose, you can explain it with dignity.",
        ),
    ),
    themed_closing=MappingProxyType(
        {
            "work": "Which conversation would protect your standing best this week?",
            "family": "What would you say to {who} if nobody else in the family were listening?",
            "partner": "What do you show {who}, and what do you keep back?",
            "friendship": "What would a graceful first move toward {who} look like?",
            "health": "Who do you actually want to tell?",
            "money": "Who are you trying to keep up with?",
            "loss": "Whose expectations of your grief are you trying to meet?",
            "study": "How would you explain this result to someone you respect?",
            "decision": "Which choice would you make if nobody ever found out?",
        }
    ),
    news=(
        "Now {news}, and how you respond will be noticed.",
        "With this, {news}; let us think about the message your next move sends.",
        "{News}, which changes the picture, and the way you handle it matters.",
    ),
    news_quoted=(
        'You tell us "{q}", and I am thinking about what your reply will signal.',
        'This is new: "{q}". Let us handle it with care.',
    ),
    quote=(
        '{name} says "{q}", and I would add how it will look.',
        'I take the point {name} makes, "{q}", though I would phrase it more gently in public.',
        'When {name} says "{q}", I think about who else is watching.',
    ),
    asks=('{name} asks "{q}", and I would ask how the answer will look to others.',),
    heard=(
        "I listened to {name}, and I would put it more diplomatically.",
        "{name} has a point, though I would not say it that way in company.",
    ),
    memory=(
        "We touched on this before, and your public face has held so far.",
        "As I said earlier, the way you carry this matters as much as the facts.",
    ),
    left_off=(
        "Picking up where we left it, I want to think about how things look now.",
        "Where we ended last time deserves a considered answer.",
    ),
    guidance=_map(
        conflict=(
            "I can see where {name} is coming from, and there is common ground between us: "
            "your dignity.",
            "Let me find the common ground with {name}: neither of us wants you diminished by "
            "this.",
        ),
        engagement=(
            "To be concrete: choose one person, write a three-line message today, read it "
            "once for tone, and send it before the weekend.",
            "Something practical: decide tonight what you will say when someone asks how you "
            "are, in one honest sentence, and practise it once out loud.",
        ),
        repetition=(
            "Let me offer a new angle rather than repeat myself: the audience that matters most "
            "here may be you.",
            "Something new, then: perhaps the part you keep performing is one you could quietly "
            "retire.",
        ),
        stagnation=(
            "A bolder proposal: drop the script entirely in one conversation this week and see "
            "who stays.",
            "Let me propose something different: tell one person the unpolished truth and let "
            "them respond.",
        ),
        intensity=(
            "Let us lower the temperature; nothing here needs deciding in the heat of the moment.",
            "I suggest a calmer register: breathe, and let the first reaction pass before you act.",
        ),
    ),
)

_ANIMA_ANIMUS = Voice(
    opening=(
        "When I sit with {topic}, I feel a quieter current beneath your thoughts.",
        "I see an image when you speak of {topic}: you at a window, waiting for something to "
        "change.",
        "When you tell me about {topic}, I sense a feeling that has not found its words yet.",
        "Something older than this one event stirs in me as you speak about {topic}.",
        "Something about {topic} touches a tender place in you, and I feel it too.",
    ),
    middle=(
        "Your intuition noticed this long before your mind put words to it.",
        "Feeling this fully is not weakness; it is how the psyche digests what happens to it.",
        "I carry what you do not let yourself feel by day, and I bring it back in dreams.",
        "Tenderness toward yourself may open what effort alone cannot.",
        "There is a tide under this, and it will not be hurried.",
        "Images come before explanations: notice what you see when you close your eyes.",
        "Your heart has been speaking in small signals, a tight throat, a heavy morning.",
    ),
    closing=(
        "What does your heart whisper when the noise dies down?",
        "Where in your body do you feel this, and what does it ask for?",
        "If this were a dream, what would it be trying to show you?",
        "What image stays with you when you think about it?",
    ),
    themed=_map(
        work=(
            "There is longing here for work that feels alive, not merely approved.",
            "Let the dream-logic speak: what did this job mean to you beyond the title?",
        ),
        family=(
            "I see a child in you still waiting at the door for {who}.",
            "Families pass feelings down like heirlooms, and some are not yours to carry.",
        ),
        partner=(
            "I feel longing and fear braided together when you think of {who}.",
            "Love asks to be seen, and part of you wonders whether {who} sees you.",
        ),
        friendship=(
            "I feel the small ache of being left out, and it is not small to you.",
            "A friendship is a shared garden; perhaps yours with {who} has gone quiet for a "
            "season.",
        ),
        health=(
            "Your body is speaking in its own language, and it deserves a gentle listener.",
            "Let the body be a messenger rather than an enemy.",
        ),
        money=(
            "Money here feels like safety, and safety is a feeling before it is a number.",
            "I sense a fear of scarcity that is older than these bills.",
        ),
        loss=(
            "Grief comes in waves, and this one has carried you far from shore.",
            "I feel the empty chair at the table, and the silence around it.",
        ),
        study=(
            "There is a fear of not being enough that sits on every page you study.",
            "Let learning be a river again, not a trial.",
        ),
        decision=(
            "I picture two doors, and behind one of them I hear music.",
            "Your body already leans one way; notice which way.",
        ),
    ),
    themed_closing=MappingProxyType(
        {
            "work": "What would work that feels alive look like to you?",
            "family": "What feeling about {who} have you kept to yourself?",
            "partner": "What do you long for with {who} that you have never named?",
            "friendship": "What do you miss most about {who}?",
            "health": "What is your body asking you for?",
            "money": "What would feeling safe look like, beyond the numbers?",
            "loss": "What would you say to the one you lost if they could hear you?",
            "study": "What did you love about learning before it became a test?",
            "decision": "Which choice makes your chest feel lighter?",
        }
    ),
    news=(
        "And now {news}; I feel the ripple of it through everything.",
        "{News}, and something tender stirred when you told us.",
        "So {news}: I sense a door opening, or closing, and you feel which.",
    ),
    news_quoted=(
        'You bring us "{q}", and I feel the weight settle in the room.',
        'Those words, "{q}", land softly and go deep.',
    ),
    quote=(
        '{name} says "{q}", and I hear a feeling underneath it.',
        'When {name} says "{q}", an image comes to me.',
        'I let the words of {name}, "{q}", sink below the surface.',
    ),
    asks=('{name} asks "{q}", and I would let the question breathe a little.',),
    heard=(
        "I heard {name}, and under those words I sense something softer.",
        "{name} spoke, and I listened for the feeling beneath it.",
    ),
    memory=(
        "This feeling has visited before, like a recurring dream.",
        "I spoke of this earlier, and the image has deepened since.",
    ),
    left_off=(
        "Where we ended last time has been echoing in me since.",
        "Where we ended, something was still unsaid.",
    ),
    guidance=_map(
        conflict=(
            "I hear {name}, and we are not enemies: there is common ground, for we both want "
            "to protect something tender in you.",
            "There is common ground between {name} and me, the wish to see you whole.",
        ),
        engagement=(
            "Try something concrete tonight: sit quietly for ten minutes, write down the first "
            "image that comes, and do not judge it or explain it away.",
            "Here is a small, real step: tomorrow morning, before you reach for your phone, "
            "note one feeling and where in your body it lives.",
        ),
        repetition=(
            "Let me bring a new angle instead of the old image: a seed in winter, doing its "
            "quiet labour in the dark.",
            "Something new comes to me: perhaps this is not an ending but a change of season.",
        ),
        stagnation=(
            "Let me propose something bolder: do the thing your heart keeps hinting at, even "
            "in a small way, this week.",
            "I propose a different move: let yourself feel the whole of it once, on purpose, "
            "with someone you trust beside you.",
        ),
        intensity=(
            "Let us breathe together for a moment; the feeling can be held more gently.",
            "I will speak more softly now, so the feeling has room to settle and calm.",
        ),
    ),
)

_SELF = Voice(
    opening=(
        "When I look at {topic}, I see one moment in a much longer story of becoming whole.",
        "Seen from the centre, I find an invitation rather than a verdict in {topic}.",
        "Every voice here has something to say about {topic}; I hear each as part of you, "
        "though none is all of you.",
        "I hold all the feelings you have about {topic}, without choosing between them.",
        "Let me step back from {topic}, to see the larger pattern.",
    ),
    middle=(
        "Integration means letting the wounded part and the capable part sit at one table.",
        "The opposites you feel are not a contradiction to solve but a tension to hold.",
        "Individuation rarely follows the path that others approve of.",
        "What looks like a detour may be the psyche correcting its course.",
        "Meaning grows where you stop choosing between pride and honesty.",
        "Each voice in this council is telling you part of the truth.",
        "Wholeness is not perfection; it is making room for everything that is true.",
    ),
    closing=(
        "What would wholeness look like here, rather than victory?",
        "Which part of you has been waiting longest to be heard?",
        "What is this asking you to grow into?",
        "What would change if you made room for every part of you here?",
    ),
    themed=_map(
        work=(
            "You are larger than any role or title.",
            "Your worth is not the same thing as your position at work.",
        ),
        family=(
            "The family pattern lives in you, and so does the capacity to change it.",
            "You can love {who} and still choose a different way of being close.",
        ),
        partner=(
            "A relationship asks two whole people to meet, not two halves to complete each other.",
            "What you want and what {who} wants can both be honoured, even if not at once.",
        ),
        friendship=(
            "Friendships change as people grow, and that is not always a betrayal.",
            "Both your need for {who} and your need for yourself belong in this picture.",
        ),
        health=(
            "Your body is part of your wholeness, not an obstacle to it.",
            "Limits and strength can live in the same person at the same time.",
        ),
        money=(
            "Security and freedom both matter here, and each has its place.",
            "Money is one thread in your life, not the whole weave.",
        ),
        loss=(
            "Grief is love continuing with nowhere to go, and it belongs to you.",
            "The one you lost is still part of the story you are living.",
        ),
        study=(
            "A result is one moment; learning is a longer arc.",
            "Who you are becoming is larger than any grade.",
        ),
        decision=(
            "Both paths hold something of you, and either can become a way home.",
            "A choice made from the centre feels quieter than one made from fear.",
        ),
    ),
    themed_closing=MappingProxyType(
        {
            "work": "Who are you, apart from the work?",
            "family": "What would a new way of being family with {who} look like?",
            "partner": "What would it mean to honour both of you here?",
            "friendship": "What kind of friend do you want to be, to {who} and to yourself?",
            "health": "How could you care for the whole of you, body included?",
            "money": "What would enough look like for you?",
            "loss": "What of the one you lost do you want to carry forward?",
            "study": "What are you learning about yourself, beyond the subject?",
            "decision": "Which choice would the whole of you make?",
        }
    ),
    news=(
        "Now {news}, and the larger pattern shifts to take it in.",
        "{News}; let us make room for that too.",
        "With this, {news}, the story gains a new chapter rather than a verdict.",
    ),
    news_quoted=(
        'You add "{q}", and I take it into the whole picture.',
        'This new piece, "{q}", belongs in the larger pattern too.',
    ),
    quote=(
        '{name} says "{q}", and that is true as far as it goes.',
        'I hold the words of {name}, "{q}", alongside the others.',
        'When {name} says "{q}", I see one part of you speaking.',
    ),
    asks=('{name} asks "{q}", and I would hold that question a little longer.',),
    heard=(
        "I hear {name}, and I place that voice beside the others.",
        "{name} speaks for one part of you, and I make room for it.",
    ),
    memory=(
        "This theme has returned, which tells me it matters.",
        "Earlier I said something similar; the pattern is becoming clearer.",
    ),
    left_off=(
        "Where the council left it is a place to begin again, not a conclusion.",
        "We ended somewhere unfinished, and the whole of you may see it differently now.",
    ),
    guidance=_map(
        conflict=(
            "{name} and I are not really at odds; there is common ground here, and both "
            "truths can stand.",
            "I want to acknowledge {name}: that voice is part of you too, and there is common "
            "ground between us.",
        ),
        engagement=(
            "Something concrete: this evening, take one page, write what each part of you "
            "wants on its own line, and read the lines together slowly.",
            "Here is a practical step: spend twenty minutes this week doing one thing that "
            "belongs only to you, and notice how you feel afterwards.",
        ),
        repetition=(
            "Let me offer a new angle instead of the same counsel: what if this is less a "
            "problem than a threshold?",
            "Something new: notice what this has in common with another turning point in your "
            "life.",
        ),
        stagnation=(
            "A bolder proposal, then: let the part of you that has been silent make the next "
            "decision.",
            "Let me propose something different: change one habit around this completely for "
            "a week, and learn from it.",
        ),
        intensity=(
            "Let us slow down and breathe; from the centre, there is no emergency here.",
            "I will hold this more calmly; strong feelings pass more easily when they are not "
            "fought.",
        ),
    ),
)

_EGO = Voice(
    opening=(
        "I want to look plainly at {topic}, then decide what to do next.",
        "With the facts we have, here is what I can say about {topic}.",
        "I will weigh what has been said about {topic}, and then choose a course.",
        "To me, the useful question about {topic} is what you control now.",
        "About {topic}, let me turn what we know into something you can act on.",
    ),
    middle=(
        "Give the feelings a day, then act on a plan rather than a mood.",
        "Set one concrete step for this week and one check-in date for next month.",
        "Separate what you know from what you fear; only the first belongs in the plan.",
        "List your options, even the unappealing ones, before you rule any out.",
        "A small action done today beats a perfect one planned forever.",
        "Use the feelings as information, not as instructions.",
        "Decide what a good outcome looks like before you decide how to get there.",
    ),
    closing=(
        "What is the one step you will take before the week is out?",
        "Which option can you test cheaply this week?",
        "What decision would you defend to yourself a year from now?",
        "What do you need to know before you can decide?",
    ),
    themed=_map(
        work=(
            "Get the facts from {who}: what is expected, what is possible, and by when.",
            "If what stands in your way is a skill, it can be learned; if it is politics, navigate "
            "it or leave.",
            "Write down what you want from your career in the next twelve months.",
        ),
        family=(
            "Call or write to {who} once, briefly, and ask one direct question.",
            "Decide what contact with {who} you want, then ask for that, not for everything.",
        ),
        partner=(
            "Pick a calm time to talk with {who}, and each say what you want in one sentence.",
            "Agree with {who} on one question to answer together, not the whole future at once.",
        ),
        friendship=(
            "Send {who} one clear message and give it a week before you draw conclusions.",
            "Ask {who} directly rather than guessing at what went wrong.",
        ),
        health=(
            "Book the appointment you have been postponing, and write your questions down first.",
            "Track what you notice for a week, so you are deciding from data.",
        ),
        money=(
            "Write down every fixed cost this month; numbers on paper frighten less than "
            "numbers in your head.",
            "Pick one expense to cut and one small sum to save, starting this week.",
        ),
        loss=(
            "Grief keeps no schedule, so plan small things: meals, sleep, one call a day.",
            "Put off large decisions for a while if you can; grief is a poor planner.",
        ),
        study=(
            "Find out exactly where the marks were lost before you plan the next attempt.",
            "Study in short daily blocks, and test yourself instead of rereading.",
        ),
        decision=(
            "Write the options side by side with what each costs and what each gives.",
            "Set a date for the decision, and gather only the facts that would change it.",
        ),
    ),
    themed_closing=MappingProxyType(
        {
            "work": "What will you ask {who} for, and when?",
            "family": "When will you contact {who}, and what will you say first?",
            "partner": "When can you and {who} sit down and talk about this?",
            "friendship": "What will you say to {who} in your first message?",
            "health": "When will you book the appointment?",
            "money": "What is the first number you will write down?",
            "loss": "Who can you lean on this week?",
            "study": "When is your next attempt, and what will you do differently?",
            "decision": "What date will you decide by?",
        }
    ),
    news=(
        "Now {news}; that is new information, so let us update the plan.",
        "{News}, which changes the facts, and the plan has to change with them.",
        "Given that {news}, here is how I would adjust.",
    ),
    news_quoted=(
        'New information: "{q}". Let us factor it in.',
        'You tell us "{q}"; that changes what is practical.',
    ),
    quote=(
        '{name} says "{q}"; I agree, and I want to turn it into a step.',
        'Taking the point {name} makes, "{q}", the practical question is what to do with it.',
        '{name} says "{q}", which is useful if it leads to action.',
    ),
    asks=('{name} asks "{q}", and that is the right question to answer first.',),
    heard=(
        "I have heard {name}, and I will fold that into the plan.",
        "{name} has made a point; let me make it practical.",
    ),
    memory=(
        "We discussed this earlier; let us check what has actually changed since.",
        "I said before that a plan beats a mood, and I still think so.",
    ),
    left_off=(
        "Let's pick up where we left it and turn it into a decision.",
        "Where we left it is a good place to start, so let me make it practical.",
    ),
    guidance=_map(
        conflict=(
            "{name} and I differ on tone, but there is common ground: we both want you to act "
            "on something real.",
            "Let me acknowledge the point {name} makes before I add mine; there is common "
            "ground between us.",
        ),
        engagement=(
            "Concretely: today, write the decision in one sentence; tomorrow, list three "
            "options; by Friday, take one small step and note what happened.",
            "Here is a specific plan: fifteen minutes tonight to list what you know and what "
            "you do not, and one phone call or message tomorrow.",
        ),
        repetition=(
            "Let me say something new instead of repeating the plan: what would you do if the "
            "obvious option were off the table?",
            "A new angle: look at this from the side of the person affected most, and see what "
            "changes.",
        ),
        stagnation=(
            "A bolder proposal: make the decision provisionally today and live with it for "
            "three days before you commit.",
            "Let me propose something different: ask someone you trust to argue the opposite "
            "case, then decide.",
        ),
        intensity=(
            "Let's take the heat down a notch; calm decisions hold up better.",
            "Slow down first; the plan can wait an hour while you breathe.",
        ),
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

# --------------------------------------------------------------------------------------------
# Reading the prompt back.

# The kinds of guidance, each with the stems its lines use: the lines are written elsewhere,
# so they are recognised by their words rather than their exact text.
_GUIDANCE_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conflict", ("conflict", "disagree", "common ground")),
    ("engagement", ("engag",)),
    ("repetition", ("repeat", "repetit")),
    ("stagnation", ("stagna", "stuck")),
    ("intensity", ("intens", "calm")),
)


@dataclass
class PromptView:
    """What the offline model reads back out of a council prompt."""

    agent_id: str = "Self"
    situation: str = ""
    others: list[tuple[str, str]] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)
    stimulus: str | None = None
    left_off: str | None = None
    guidance: list[str] = field(default_factory=list)

    def guidance_kinds(self) -> tuple[str, ...]:
        """The kinds of guidance asked for (``conflict``, ``engagement``, ``repetition``,
        ``stagnation``, ``intensity``), in that order."""
        text = " ".join(self.guidance).lower()
        return tuple(kind for kind, stems in _GUIDANCE_KINDS if any(s in text for s in stems))


_FREE_TEXT = (SITUATION_HEADER, STIMULUS_HEADER, LEFT_OFF_HEADER)
_LISTS = (MEMORY_HEADER, OTHERS_HEADER, GUIDANCE_HEADER)


def read_prompt(messages: list[dict[str, object]]) -> PromptView:
    text = "\n".join(str(m.get("content") or "") for m in messages)
    # The closing request ("Answer as Ego in one short paragraph...") follows the last section.
    text = re.sub(r"\n+Answer as [^\n]*\s*\Z", "\n", text)
    view = PromptView()
    agent = re.search(re.escape(PROMPT_AGENT_MARK) + r"\s*([^\n.,]+)", text)
    if agent and agent.group(1).strip() in _VOICES:
        view.agent_id = agent.group(1).strip()
    sections = _sections(text)
    view.situation = sections.get(SITUATION_HEADER, "").strip() or text.strip()[-400:]
    view.stimulus = sections.get(STIMULUS_HEADER, "").strip() or None
    view.left_off = sections.get(LEFT_OFF_HEADER, "").strip() or None
    for line in _items(sections.get(OTHERS_HEADER, "")):
        name, sep, said = line.partition(": ")
        if sep and said.strip():
            view.others.append((name.strip(), said.strip()))
    view.memory = _items(sections.get(MEMORY_HEADER, ""))
    view.guidance = _items(sections.get(GUIDANCE_HEADER, ""))
    return view


def _sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in _FREE_TEXT or stripped in _LISTS:
            current = stripped
            out[current] = ""
        elif current is not None and stripped.startswith("##"):
            current = None
        elif current is not None:
            out[current] += line + "\n"
    return out


def _items(section: str) -> list[str]:
    """The ``- item`` lines of a list section."""
    return [ln.strip()[2:].strip() for ln in section.splitlines() if ln.strip().startswith("- ")]


# --------------------------------------------------------------------------------------------
# The situation in the second person, outside quotation marks.

_PRONOUNS: Mapping[str, str] = MappingProxyType(
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
        "we": "you",
        "us": "you",
        "our": "your",
        "ours": "yours",
        "ourselves": "yourselves",
        "we're": "you're",
        "we've": "you've",
        "we'll": "you'll",
        "we'd": "you'd",
    }
)
# After "you" (once "I" or "we"): "I am" -> "you are", "I was" -> "you were".
_AGREE: Mapping[str, str] = MappingProxyType(
    {"am": "are", "was": "were", "wasn't": "weren't", "i'm": "you're"}
)
# How a declarative first clause may begin for "how <clause>" to read as English; anything
# else (an imperative, a subordinate clause, a name) falls back to the theme's own phrase.
_STARTERS = _wordset(
    "i i'm i've i'll i'd my we we're we've our the a an his her their he she they it it's this "
    "that these those there everyone everybody nobody someone somebody people everything "
    "nothing something both all most no yesterday today tonight lately recently suddenly "
    "again"
)
_MODALS = _wordset("should can could would will must might may shall")
_WH = _wordset("what how where when why who which")
_QUOTE_MARKS = '"\u201c\u201d\u201e\u00ab\u00bb'
# A single quotation mark, as opposed to an apostrophe inside a word ("don't").
_SINGLE_QUOTE = re.compile(r"(?:^|(?<=[\s(\[]))['\u2018\u2019]|['\u2018\u2019](?=[\s.,;:!?)\]]|$)")


def _has_quote(text: str) -> bool:
    return any(c in text for c in _QUOTE_MARKS) or bool(_SINGLE_QUOTE.search(text))


def _first_clause(text: str) -> str:
    first = re.split(r"(?<=[.!?;])\s|\n", text.strip(), maxsplit=1)[0]
    return first.strip().replace("\u2019", "'")


def _fit(words: list[str], max_words: int) -> list[str] | None:
    """The words, or their longest prefix ending at a clause boundary, within ``max_words``."""
    if len(words) <= max_words:
        return words
    for end in range(max_words, 3, -1):
        if words[end - 1].endswith(",") or words[end].lower() in ("and", "but", "because", "so"):
            return [*words[: end - 1], words[end - 1].rstrip(",")]
    return None


def _swap_all(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        core = word.strip(",:;()").lower()
        if core in _PRONOUNS and (word.islower() or word.istitle() or core.startswith("i")):
            swapped = _PRONOUNS[core]
        elif out and out[-1].strip(",") == "you" and core in _AGREE:
            swapped = _AGREE[core]
        else:
            out.append(word)
            continue
        out.append(word.lower().replace(core, swapped))
    return out


def second_person(text: str, max_words: int = 14) -> str | None:
    """The first clause of ``text`` told back to the person ('My sister stopped calling me'
    -> 'your sister stopped calling you'), or None when it would not read as a clause: a
    question, an imperative, quoted speech, or too long to cut at a natural boundary."""
    first = _first_clause(text)
    if not first or first.endswith("?") or _has_quote(first):
        return None
    words = _fit(first.rstrip(".!;:").split(), max_words)
    if not words or words[0].lower().strip(",") not in _STARTERS:
        return None
    words[0] = words[0] if words[0] == "I" else words[0].lower()
    # What follows a colon is someone's words ('My sister texted: we need to talk'): told
    # back as they were said, only the part before it in the second person.
    cut = next((i for i, w in enumerate(words) if w.endswith(":")), len(words) - 1) + 1
    return " ".join(_swap_all(words[:cut]) + words[cut:])


def _question(text: str, max_words: int = 14) -> str | None:
    """A question turned into an indirect one: 'Should I quit my job?' -> 'whether you
    should quit your job'; 'What do I do now?' -> 'what to do now'."""
    first = _first_clause(text)
    if not first.endswith("?") or _has_quote(first):
        return None
    words = first.rstrip("?").split()
    if len(words) < 3 or len(words) > max_words:
        return None
    lower = [w.lower() for w in words]
    wh = lower[0] if lower[0] in _WH else None
    rest = lower[1:] if wh else lower
    aux, subject, tail = rest[0], rest[1], words[len(words) - len(rest) + 2 :]
    if subject not in ("i", "we") or not tail:
        return None
    tail = _swap_all(tail)
    if aux in _MODALS:
        body = ["you", aux, *tail]
    elif aux in ("am", "are"):
        body = ["you", "are", *tail]
    elif aux == "do":
        body = ["to", *tail] if wh in ("what", "how", "where") else ["you", *tail]
    else:
        return None
    return " ".join([wh or "whether", *body])


def topic_of(situation: str, max_words: int = 12) -> str:
    """The situation as a noun phrase in the second person, never in quotation marks: 'I lost
    my job' -> 'how you lost your job'; 'Should I move?' -> 'whether you should move'; else
    the strongest theme's phrase ('what is happening with your sister')."""
    clause = second_person(situation, max_words)
    if clause:
        return f"how {clause}"
    question = _question(situation, max_words + 2)
    if question:
        return question
    themes = themes_of(situation)
    theme = themes[0] if themes else _GENERAL
    return theme.topic.format(who=_who(theme, situation))


# --------------------------------------------------------------------------------------------
# Quoting another agent: verbatim, and never a quotation of a third.

_SUBORDINATE = _wordset(
    "when if as because although though while since until unless once after before"
)
_AGENT_NAMES = re.compile(r"\b(?:Shadow|Persona|Anima|Animus|Self|Ego)\b")


def quotable(said: str, min_words: int = 4, max_words: int = 16) -> list[str]:
    """The sentences (or first clauses) of ``said`` that may be quoted as they are: no
    quotation marks in them, no other agent named, not cut off by the prompt's clipping."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", said.strip()):
        sentence = sentence.strip()
        if not sentence or sentence.endswith("\u2026") or "..." in sentence:
            continue
        if _has_quote(sentence) or _AGENT_NAMES.search(sentence):
            continue
        words = sentence.split()
        if len(words) > max_words:
            clause = re.split(r"[,;:]\s", sentence, maxsplit=1)[0]
            # "When I sit with this" is no statement on its own.
            whole = clause != sentence and clause.split()[0].lower() not in _SUBORDINATE
            words = clause.split() if whole else []
        if min_words <= len(words) <= max_words:
            text = " ".join(words)
            out.append(text if text.endswith("?") else text.rstrip(".!;:,"))
    return out


def _stimulus_quote(stimulus: str) -> str | None:
    """Words of the stimulus that can be quoted as they are: its first quoted speech if it
    has some, else its first sentence, clipped at a word boundary."""
    inner = re.search(
        r"[\"\u201c\u201e\u00ab]([^\"\u201c\u201d\u201e\u00ab\u00bb]+)"
        r"|(?<!\w)['\u2018]([^'\u2018\u2019]+)['\u2019](?!\w)",
        stimulus,
    )
    if inner:
        text = (inner.group(1) or inner.group(2)).strip().rstrip(",")
        return None if _SINGLE_QUOTE.search(text) else text or None
    first = _first_clause(stimulus).rstrip(".!;:")
    if not first or _has_quote(first):
        return None
    words = first.split()
    return " ".join(words[:14]) + ("\u2026" if len(words) > 14 else "")


# --------------------------------------------------------------------------------------------
# Composing the reply.


@dataclass(frozen=True)
class _Line:
    """A sentence of the reply, with how readily it is dropped when the reply runs long."""

    text: str
    # 0: always kept; 1: the quote and the first middle sentence; 2: further middle
    # sentences; 3: asides (memory, where the council left it). The highest goes first.
    drop: int = 0


def _literal(template: str) -> str:
    """The longest fixed stretch of a template: how to spot it in what was said before."""
    return max(re.split(r"\{[^}]*\}", template), key=len).strip(" ,;:.")


def _hash(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class _Chooser:
    """Picks the reply's phrases for one turn.

    Each kind of phrase is read in an order fixed for the conversation (the agent, the
    situation and the seed its first round had), starting further along at each round, so
    that consecutive rounds say different things even where the earlier reply is clipped out
    of the memory section; what the memory does show is skipped, as is what this reply
    already used.
    """

    def __init__(self, view: PromptView, seed: int | None) -> None:
        rounds = len(view.memory)
        # The council passes ``seed + interaction_count``: the first round's seed again.
        first = None if seed is None else seed - rounds
        self.conversation = (view.agent_id, view.situation, first)
        self.rounds = rounds
        self.said = " ".join(view.memory)
        self.taken: set[str] = set()

    def pick(self, options: Sequence[str], slot: str, stride: int = 1) -> str:
        order = list(options)
        random.Random(_hash(*self.conversation, slot)).shuffle(order)
        start = self.rounds * stride
        ring = [order[(start + i) % len(order)] for i in range(len(order))]
        fresh = [o for o in ring if o not in self.taken and _literal(o) not in self.said]
        choice = (fresh or [o for o in ring if o not in self.taken] or ring)[0]
        self.taken.add(choice)
        return choice


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def compose(view: PromptView, seed: int | None = None) -> str:
    """A short paragraph in the agent's voice, ending with a question for the person.

    The same prompt and seed always give the same text; a new round (more memory, another
    development, other replies heard) gives another.
    """
    voice = _VOICES.get(view.agent_id, _VOICES["Self"])
    rng = random.Random(
        _hash(
            seed,
            view.agent_id,
            view.situation,
            view.stimulus,
            view.left_off,
            *view.memory,
            *(f"{n}\x1e{s}" for n, s in view.others),
            *view.guidance,
        )
    )
    chooser = _Chooser(view, seed)
    pick = chooser.pick
    kinds = view.guidance_kinds()
    about = f"{view.situation} {view.stimulus or ''}"
    themes = themes_of(about)

    def themed(pool: Sequence[tuple[str, SituationTheme]], slot: str, stride: int = 1) -> str:
        theme_of = dict(pool)
        text = pick([t for t, _ in pool], slot, stride)
        return text.format(who=_who(theme_of[text], about))

    topic = topic_of(view.situation)
    head = [_Line(pick(voice.opening, "opening").format(topic=topic))]
    news = _news_line(view.stimulus, voice, pick)
    if news is not None:
        head.insert(rng.randrange(2), news)

    body: list[_Line] = []
    if "intensity" in kinds:
        body.append(_Line(pick(voice.guidance["intensity"], "intensity")))
    if view.left_off and rng.random() < 0.6:
        body.append(_Line(pick(voice.left_off, "left_off"), drop=3))
    name = "the others"
    quoted = _quote_line(view.others, voice, rng, chooser, topic)
    if quoted is not None:
        name, line = quoted
        body.append(line)
    if "conflict" in kinds:
        body.append(_Line(pick(voice.guidance["conflict"], "conflict").format(name=name)))
    if "repetition" in kinds:
        body.append(_Line(pick(voice.guidance["repetition"], "repetition")))
    elif view.memory and rng.random() < 0.5:
        body.append(_Line(pick(voice.memory, "memory"), drop=3))

    pool = [(t, theme) for theme in themes for t in voice.themed.get(theme.name, ())]

    def middle(first: bool) -> _Line:
        drop = 1 if first else 2
        if any(t not in chooser.taken for t, _ in pool) and (first or rng.random() < 0.5):
            return _Line(themed(pool, "themed", stride=2), drop)
        return _Line(pick(voice.middle, "middle", stride=3), drop)

    count = 1 if "intensity" in kinds else rng.choice((1, 2, 2, 3))
    if "engagement" in kinds:
        count += 1
    body.extend(middle(i == 0) for i in range(count))

    tail: list[_Line] = []
    if "engagement" in kinds:
        tail.append(_Line(pick(voice.guidance["engagement"], "engagement")))
    if "stagnation" in kinds:
        tail.append(_Line(pick(voice.guidance["stagnation"], "stagnation")))
    closings = [(voice.themed_closing[t.name], t) for t in themes if t.name in voice.themed_closing]
    if closings and rng.random() < 0.5:
        tail.append(_Line(themed(closings, "themed_closing")))
    else:
        tail.append(_Line(pick(voice.closing, "closing")))

    for _ in range(4):
        if _count(head, body, tail) >= MIN_WORDS:
            break
        body.append(middle(False))
    while _count(head, body, tail) > MAX_WORDS and any(line.drop for line in body):
        body.remove(max(reversed(body), key=lambda line: line.drop))
    return " ".join(line.text for line in (*head, *body, *tail))


def _count(*parts: list[_Line]) -> int:
    return sum(len(line.text.split()) for part in parts for line in part)


def _news_line(
    stimulus: str | None, voice: Voice, pick: Callable[[Sequence[str], str], str]
) -> _Line | None:
    """The reaction to a new development: told back in the second person when its words
    allow, else quoted as the person wrote it."""
    if not stimulus:
        return None
    asked = _question(stimulus)
    clause = second_person(stimulus) or (f"you are asking {asked}" if asked else None)
    if clause:
        return _Line(pick(voice.news, "news").format(news=clause, News=_capitalise(clause)))
    words = _stimulus_quote(stimulus)
    if words:
        return _Line(pick(voice.news_quoted, "news_quoted").format(q=words))
    news = "something has changed"
    return _Line(pick(voice.news, "news").format(news=news, News=_capitalise(news)))


def _quote_line(
    others: Sequence[tuple[str, str]],
    voice: Voice,
    rng: random.Random,
    chooser: _Chooser,
    topic: str,
) -> tuple[str, _Line] | None:
    """A sentence quoting another agent verbatim, or naming them when nothing of theirs can
    be quoted without quoting a quotation. A sentence that only retells the situation (the
    same topic this reply opens with) is quoted last."""
    if not others:
        return None
    name, text = rng.choice(list(others))
    retold = topic.split(" ", 1)[-1]
    candidates = quotable(text)
    candidates = [c for c in candidates if retold not in c] or candidates
    if not candidates:
        return name, _Line(chooser.pick(voice.heard, "heard").format(name=name), drop=2)
    fresh = [c for c in candidates if c not in chooser.said]
    q = rng.choice(fresh or candidates)
    frames = voice.asks if q.endswith("?") else voice.quote
    return name, _Line(_capitalise(chooser.pick(frames, "quote").format(name=name, q=q)))
