"""The web console at `/ui`: people watch agents, decide held calls and test policies here.

Server-rendered pages (Starlette and Jinja2) that work without JavaScript; `static/console.js`
adds live updates and keyboard shortcuts. People sign in with a user key or through the
identity provider; every route checks their permission on the server (`guard.py`).
"""

from gateway.console.routes import console_routes
from gateway.console.services import ConsoleServices
from gateway.console.sessions import ConsoleSessions

__all__ = ["ConsoleServices", "ConsoleSessions", "console_routes"]
