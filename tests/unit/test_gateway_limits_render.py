"""The gateway limits `lunarhub render` emits are lunarhub/compute/gateway_limits.py itself,
with the deployment's values: what ruff lints and tests import is what a site runs."""

from __future__ import annotations

import inspect

from traitlets.config import Config

from lunarhub import config
from lunarhub.compute import gateway_limits, render


def test_rendered_snippet_is_the_modules_source() -> None:
    d = config.load()
    text = render.limits_snippet(d, render.KUBE_BACKEND, {"LUNARHUB_SITE": "ru"})
    for function in (gateway_limits._user_limits, gateway_limits._cluster_options,
                     gateway_limits._with_cluster_cap, gateway_limits.lunarhub_configure):
        assert inspect.getsource(function) in text
    assert '"students": {' in text and 'EXTRA_ENVIRONMENT = {"LUNARHUB_SITE": "ru"}' in text
    assert f"BACKEND_CLASS = {render.KUBE_BACKEND!r}" in text
    assert text.rstrip().endswith("lunarhub_configure(c)")
    assert "from __future__" not in text  # the chart concatenates snippets: it must stay valid mid-file
    assert '"""Per-group dask limits' not in text  # the module docstring stays in the module


def test_the_module_configures_a_gateway_as_imported() -> None:
    from dask_gateway_server.backends.local import LocalBackend

    c = Config()
    gateway_limits.lunarhub_configure(c)
    assert issubclass(c.DaskGateway.backend_class, LocalBackend)
    assert c.ClusterConfig.idle_timeout == gateway_limits.IDLE_TIMEOUT
