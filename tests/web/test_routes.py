"""``/static/*``, ``/demo`` and the dev-only ``POST /demo/token`` over plain HTTP: content types,
caching, security headers, and no dev sign-in outside dev."""

from __future__ import annotations

import httpx
import pytest

from app.web.routes import CSP
from tests.support.processes import ServiceProcess
from tests.web.conftest import Stack

CLIENT_FILES = ["draftwire.js", "autosave.js", "realtime.js", "sse.js", "retry.js", "demo.js", "demo-numbers.js"]


def _secure(res: httpx.Response) -> None:
    assert res.headers["content-security-policy"] == CSP
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("name", CLIENT_FILES)
def test_static_modules_are_javascript_with_cache_validators(stack: Stack, name: str) -> None:
    """Each module is served as JavaScript, cacheable for 5 minutes, and revalidates to a 304."""
    res = httpx.get(f"{stack.api.url}/static/{name}")
    assert res.status_code == 200 and res.headers["content-type"] == "text/javascript; charset=utf-8"
    assert res.headers["cache-control"] == "public, max-age=300, must-revalidate"
    _secure(res)
    again = httpx.get(f"{stack.api.url}/static/{name}", headers={"if-none-match": res.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_unknown_static_file_is_a_json_404(stack: Stack) -> None:
    """Only shipped client files are served; the page itself is not a static file."""
    for name in ("nope.js", "demo.html", "..%2Fpyproject.toml"):
        res = httpx.get(f"{stack.api.url}/static/{name}")
        assert res.status_code == 404 and res.json()["error"] == "not_found", name


def test_demo_page_has_a_strict_csp_and_no_inline_script(stack: Stack) -> None:
    """/demo is HTML under the strict CSP, and needs nothing inline that the CSP would block."""
    res = httpx.get(f"{stack.api.url}/demo")
    assert res.status_code == 200 and res.headers["content-type"] == "text/html; charset=utf-8"
    _secure(res)
    html = res.text
    assert "<script>" not in html and "style=" not in html and "<style" not in html and "onclick" not in html
    assert '<script type="module" src="/static/demo.js"></script>' in html


def test_dev_token_in_dev(stack: Stack) -> None:
    """In dev, POST /demo/token mints a working token for the chosen user; bad ids are 422."""
    assert httpx.get(f"{stack.api.url}/demo/config").json() == {"devSignIn": True}
    res = httpx.post(f"{stack.api.url}/demo/token", json={"userId": "alice", "admin": False})
    assert res.status_code == 201 and res.json()["userId"] == "alice"
    drafts = httpx.get(f"{stack.api.url}/api/drafts", headers={"authorization": f"Bearer {res.json()['token']}"})
    assert drafts.status_code == 200
    for body in ({"userId": ""}, {"userId": "a b"}, {"userId": "x" * 129}, {"userId": "bob", "admin": "yes"}):
        bad = httpx.post(f"{stack.api.url}/demo/token", json=body)
        assert bad.status_code == 422 and set(bad.json()) == {"error", "detail"}, body
    assert httpx.post(f"{stack.api.url}/demo/token", content=b"{not json").status_code == 400


def test_no_dev_token_outside_dev(prod_api: ServiceProcess) -> None:
    """Outside dev the endpoint does not exist; the page still loads and asks for a pasted token."""
    res = httpx.post(f"{prod_api.url}/demo/token", json={"userId": "alice", "admin": True})
    assert res.status_code == 404 and "token" not in res.json()
    assert httpx.get(f"{prod_api.url}/demo").status_code == 200
    assert httpx.get(f"{prod_api.url}/demo/config").json() == {"devSignIn": False}
