"""The web service: the page (htmx, no JavaScript of ours), the SSE streams and the API.

Data flows one way: the bus's events are encoded here, once per format, for every viewer.
"""

from .app import create_app

__all__ = ("create_app",)
