# dask-gateway-server config of lunarhub: thin on purpose. Everything comes from the
# one deployment file ($LUNARHUB_CONFIG, default hub/lunarhub.yaml) via lunarhub.compute.gateway.
from lunarhub import config
from lunarhub.compute import gateway
from lunarhub.config import roster
from lunarhub.upstream import dask_gateway_preexec, dask_gateway_workdir

# Refuses to start on a dask-gateway-server the working-directory fix was not checked on.
dask_gateway_workdir.apply()
dask_gateway_preexec.apply()
c = get_config()  # noqa: F821 - provided by dask-gateway-server when it loads this file
gateway.configure(c, roster.effective(config.load()))
