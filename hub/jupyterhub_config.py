# JupyterHub config of lunarhub: thin on purpose. Everything comes from the one
# deployment file ($LUNARHUB_CONFIG, default hub/lunarhub.yaml) via lunarhub.hub.
from lunarhub import config, hub, hub_patches, roster

hub_patches.apply()  # group shares reach tokens (see lunarhub/hub_patches.py)
c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
hub.configure(c, roster.effective(config.load()))
