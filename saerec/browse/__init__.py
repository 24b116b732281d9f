"""The feature browser: a static site over a run (``saerec report --html``), the same site served with a
JSON API mirroring ``saerec.v1`` and a steering playground (``saerec browse``).

- ``activity``: the one pass over the test activations the pages need (histograms, shaded histories)
- ``data``: everything else the pages show, read from ``RUN/`` into JSON-ready dicts
- ``site``: writes the site (HTML shells, one JS/CSS bundle, data as ``.js`` files that work from file://)
- ``api``: the JSON/HTTP API (proto3 JSON mapping) over :class:`saerec.serving.service.RecommenderService`
- ``server``: ``saerec browse``: stdlib HTTP server for the site and the API
"""
