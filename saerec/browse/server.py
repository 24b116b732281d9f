"""``saerec browse``: the feature browser and the JSON API from one stdlib HTTP server.

GET serves the static site (the same folder ``saerec report --html`` writes, built into
``RUN/browse/`` and rebuilt when the run's interpretation or sweep is newer); POST
``/saerec/v1/<method>`` is the JSON API (:mod:`.api`) over an in-process
:class:`~saerec.serving.service.RecommenderService`, which is what the playground calls. One process,
no Ray: a product person's laptop runs it. The Serve deployment is the place for production traffic.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..layout import A
from .api import MAX_BODY, PREFIX, JsonApi, error

log = logging.getLogger("saerec.browse")
SOURCES = (A.FEATURES, A.ATTRIBUTES, A.SWEEP, A.SAE_WEIGHTS)


def stale(run, site: Path) -> bool:
    """Whether ``site`` is missing or older than an artifact it shows."""
    marker = site / "saerec-site.json"
    if not marker.exists():
        return True
    built = marker.stat().st_mtime
    return any(run.has(rel) and run.path(rel).stat().st_mtime > built for rel in SOURCES)


class Handler(SimpleHTTPRequestHandler):
    api: JsonApi

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


def make_server(site: Path, api: JsonApi, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), partial(Handler, api=api, directory=str(site)))


def open_server(run, host: str = "127.0.0.1", port: int = 8080, users: int = 20, bins: int = 24,
                rebuild: bool = False, progress: bool = True) -> ThreadingHTTPServer:
    """Load the run's service, (re)build ``RUN/browse/`` when stale, and bind the server (not started)."""
    from ..errors import SaerecError
    from ..serving.service import RecommenderService
    from .data import check_run, site_data
    from .site import write_site

    check_run(run)
    service = RecommenderService(run)
    site = run.path(A.BROWSE)
    if rebuild or stale(run, site):
        write_site(site, site_data(run, users=users, bins=bins, service=service, progress=progress), str(run.root))
    try:
        return make_server(site, JsonApi(service), host, port)
    except OSError as e:
        raise SaerecError(f"--port {port}: cannot listen on {host} ({e.strerror})") from None
