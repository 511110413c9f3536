"""The browser side: the dependency-free JavaScript client (``static/draftwire.js``) and the
``/demo`` page that shows it working, served by the API."""

from app.config import Settings
from app.parts import HttpPart, provide
from app.web.routes import DEV_ROUTES, ROUTES, routes_for


def http_part(settings: Settings) -> HttpPart:
    """The client's static files and the demo page (its dev-token route only in dev)."""
    return HttpPart(routes=routes_for(settings), dependencies={"web_settings": provide(settings)})


__all__ = ("DEV_ROUTES", "ROUTES", "http_part", "routes_for")
