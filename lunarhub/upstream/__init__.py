"""Workarounds of upstream bugs and hooks into upstream internals, one module per workaround.

Each module says what upstream code it works around (the issue or PR, or the code location
when none is known), the version range it was checked on (`RANGES`), and when to remove
it; its `apply()` refuses to start on a release outside that range (versions.py), and
tests/unit/test_upstream.py holds its canary. pyproject.toml bounds the same packages.

- jupyterhub_shares: group shares reach tokens (hub process)
- jupyterhub_share_policy: a policy for the hub's own sharing API (hub process)
- jupyterhub_dashboard_consent: no "Authorize access" page for dashboards (hub process)
- dask_gateway_workdir: LocalBackend chowns "/" (gateway process)
- dask_gateway_preexec: a per-process step before the child drops root (gateway process)
- dask_gateway_bind_host: batch jobs' schedulers and workers on loopback (a site gateway's process)
- bokeh_session_hooks: ready sessions of a dashboard (a dashboard's Panel process)
- panel_page_html: shared BokehJS/Panel scripts (a dashboard's Panel process)
- jsonschema_iri: rfc3987-syntax's grammars compiled at every server start (users' servers)

Nothing here is imported by a user's kernel.
"""
