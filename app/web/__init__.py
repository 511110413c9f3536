"""The browser side: the dependency-free JavaScript client (``static/draftwire.js``) and the
``/demo`` page that shows it working, served by the API."""

from app.web.routes import DEV_ROUTES, ROUTES, routes_for

__all__ = ("DEV_ROUTES", "ROUTES", "routes_for")
