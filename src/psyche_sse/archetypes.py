"""The five archetypes of the council, in speaking order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Archetype:
    agent_id: str
    agent_type: str
    temperature: float
    colour: str
    role: str
    voice: str

    @property
    def slug(self) -> str:
        """Safe in URLs, element ids and CSS classes: ``Anima/Animus`` -> ``anima-animus``."""
        return self.agent_id.lower().replace("/", "-")


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "Shadow",
        "ShadowAgent",
        0.9,
        "#2c3e50",
        "the repressed and disowned: instincts, envy, anger, what the person won't admit",
        "blunt, unsettling, honest about what is hidden",
    ),
    Archetype(
        "Persona",
        "PersonaAgent",
        0.5,
        "#3498db",
        "the social mask: reputation, norms, how it looks to others",
        "polished, socially aware, concerned with appearances",
    ),
    Archetype(
        "Anima/Animus",
        "AnimaAnimusAgent",
        0.7,
        "#9b59b6",
        "the contrasexual inner figure: feeling, intuition, the bridge to the unconscious",
        "lyrical, intuitive, speaking in images and feelings",
    ),
    Archetype(
        "Self",
        "SelfAgent",
        0.6,
        "#f39c12",
        "wholeness and individuation: the regulating centre, integration of opposites",
        "calm, integrative, seeing the larger pattern",
    ),
    Archetype(
        "Ego",
        "EgoAgent",
        0.3,
        "#27ae60",
        "the conscious, rational mediator: reality testing and decisions",
        "clear, practical, decisive",
    ),
)

BY_ID: Mapping[str, Archetype] = MappingProxyType({a.agent_id: a for a in ARCHETYPES})
