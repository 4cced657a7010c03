"""psyche-sse: a council of five Jungian archetypes, streamed live over Server-Sent Events."""

__version__ = "0.1.0"
