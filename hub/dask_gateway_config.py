# dask-gateway-server config of lunarhub: thin on purpose. Everything comes from the
# one deployment file ($LUNARHUB_CONFIG, default hub/lunarhub.yaml) via lunarhub.compute.gateway.
from lunarhub import config
from lunarhub.compute import gateway
from lunarhub.config import roster

c = get_config()  # noqa: F821 - provided by dask-gateway-server when it loads this file
gateway.configure(c, roster.effective(config.load()))
