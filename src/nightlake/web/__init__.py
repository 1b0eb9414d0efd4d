"""``nightlake serve``: the nightly QA web app over a lake (read-only).

::

    web/
      app.py        create_app(lake, settings): the Starlette app, headers, error pages
      pages.py      one handler per URL; the DOM contract the browser tests rely on
      queries.py    each page's data from the lake (Arrow / Python rows), user SQL with limits
      charts.py     Vega-Lite specs built from those rows (drawn in the browser)
      settings.py   LAKE/serve.toml: limits and thresholds
      templates/    Jinja2 (autoescaped) HTML
      static/       style.css, charts.js, vendor/ (Vega, Vega-Lite, vega-embed, licences)
"""
