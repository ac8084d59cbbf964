# dask-gateway-server config of lunarhub: thin on purpose. Everything comes from the
# one deployment file ($LUNARHUB_CONFIG, default hub/lunarhub.yaml) via lunarhub.gateway.
from lunarhub import config, gateway, roster

c = get_config()  # noqa: F821 - provided by dask-gateway-server when it loads this file
gateway.configure(c, roster.effective(config.load()))
