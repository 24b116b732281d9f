"""``saerec browse``: the feature browser and the JSON API from one stdlib HTTP server.

GET serves the static site (the same folder ``saerec report --html`` writes, built into
``RUN/browse/`` and rebuilt when the run's interpretation, sweep or SAE evaluation is newer); POST
``/saerec/v1/<method>`` is the JSON API (:mod:`saerec.serving.jsonapi`) over an in-process
:class:`~saerec.serving.service.RecommenderService`, which is what the playground calls. One process,
no Ray: a product person's laptop runs it. With ``--service URL`` the API calls go instead to a running
``saerec serve`` (its HTTP proxy answers the same API from the served replicas), so the playground
steers through the production path.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..layout import A
from ..serving.jsonapi import MAX_BODY, PREFIX, JsonApi, error, service_calls

log = logging.getLogger("saerec.browse")
SOURCES = (A.FEATURES, A.ATTRIBUTES, A.SWEEP, A.SAE_WEIGHTS, A.EVAL_FEATURES, A.EVAL_SUMMARY, A.ISOLATION)


def stale(run, site: Path) -> bool:
    """Whether ``site`` is missing or older than an artifact it shows (a re-run of ``saerec sae-eval``
    or ``steer-eval`` rewrites theirs, so the next ``saerec browse`` rebuilds)."""
    marker = site / "saerec-site.json"
    if not marker.exists():
        return True
    built = marker.stat().st_mtime
    return any(run.has(rel) and run.path(rel).stat().st_mtime > built for rel in SOURCES)


class ServiceApi:
    """The JSON API of a running ``saerec serve``, forwarded: ``handle`` as :class:`JsonApi`'s, each
    call a POST to ``url`` + the path (with ``Authorization: Bearer`` when a token is given). The
    service's answer, status and body, is passed on; an unreachable service is 502."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        from ..errors import UsageError

        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--service must be an http(s) URL of `saerec serve`'s HTTP port "
                             f"(e.g. http://127.0.0.1:8000), got {url!r}")
        self.url, self.timeout = url.rstrip("/"), timeout
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:      # the service's own 4xx/5xx: passed on when it is the API's
            try:
                answer = json.loads(e.read())
            except ValueError:
                answer = None
            if isinstance(answer, dict) and "error" in answer:
                return e.code, answer
            return error(502, f"service: {self.url} answered HTTP {e.code} {e.reason}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            return error(502, f"service: cannot reach {self.url} ({getattr(e, 'reason', e)})")


class Handler(SimpleHTTPRequestHandler):
    api: JsonApi | ServiceApi

    def __init__(self, *args, api: JsonApi, **kwargs):
        self.api = api
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):          # noqa: A002 - the stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    def _json(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _api(self, method: str) -> None:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0:
            return self._json(*error(400, "Content-Length: not a byte count"))
        if n > MAX_BODY:                               # refused before reading it
            self.close_connection = True
            return self._json(*error(413, f"body: {n} bytes; at most {MAX_BODY} are accepted"))
        self._json(*self.api.handle(method, self.path, self.rfile.read(n)))

    def do_POST(self):  # noqa: N802 - the stdlib's name
        self._api("POST")

    def do_GET(self):  # noqa: N802
        if self.path.startswith(PREFIX):
            return self._api("GET")
        super().do_GET()


def make_server(site: Path, api: JsonApi | ServiceApi, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), partial(Handler, api=api, directory=str(site)))


def open_server(run, host: str = "127.0.0.1", port: int = 8080, users: int = 20, bins: int = 24,
                rebuild: bool = False, progress: bool = True, service_url: str | None = None,
                token: str | None = None) -> ThreadingHTTPServer:
    """Load the run's service, (re)build ``RUN/browse/`` when stale, and bind the server (not started).
    ``service_url``: answer the API from that running ``saerec serve`` instead (the run is then loaded
    here only to rebuild the site)."""
    from ..errors import SaerecError
    from ..serving.service import RecommenderService
    from .data import check_run, site_data
    from .evaluation import images
    from .site import write_site

    check_run(run)
    api = ServiceApi(service_url, token) if service_url else None
    site = run.path(A.BROWSE)
    build = rebuild or stale(run, site)
    service = RecommenderService(run) if build or api is None else None
    if build:
        write_site(site, site_data(run, users=users, bins=bins, service=service, progress=progress), str(run.root),
                   images(run))
    try:
        return make_server(site, api or JsonApi(service_calls(service)), host, port)
    except OSError as e:
        raise SaerecError(f"--port {port}: cannot listen on {host} ({e.strerror})") from None
