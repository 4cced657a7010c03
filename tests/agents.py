"""The council's agents, in the order they speak, as the tests expect them."""

from __future__ import annotations

from psyche_sse.archetypes import ARCHETYPES

AGENT_IDS = [a.agent_id for a in ARCHETYPES]
