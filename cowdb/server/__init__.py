"""``cowdb serve``: an HTTP API with accounts and optimistic concurrency, and a web UI
that draws the timelines. Install with ``pip install 'cowdb[server]'``.

    from cowdb.server import create_app
    app = create_app("data.cow")        # any ASGI server; `cowdb serve` runs uvicorn
"""
from .app import Refused, Server, create_app

__all__ = ["create_app", "Server", "Refused"]
