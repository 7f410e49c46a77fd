"""The OpenAI-compatible HTTP server (`brainwork serve`)."""

from brainwork.server.app import build_app
from brainwork.server.state import ServerConfig, ServerState

__all__ = ["ServerConfig", "ServerState", "build_app"]
