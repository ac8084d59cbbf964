# JupyterHub config of lunarhub: thin on purpose. Everything comes from the one
# deployment file ($LUNARHUB_CONFIG, default hub/lunarhub.yaml) via lunarhub.hub.
from lunarhub import config, hub, roster

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
hub.configure(c, roster.effective(config.load()))
