# JupyterHub config of lunarhub: thin on purpose. Everything comes from the one
# deployment file ($LUNARHUB_CONFIG, default hub/lunarhub.yaml) via lunarhub.platform.hub.
from lunarhub import config
from lunarhub.config import roster
from lunarhub.platform import hub
from lunarhub.upstream import jupyterhub_shares as hub_patches

hub_patches.apply()  # group shares reach tokens (see lunarhub/hub_patches.py)
c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
hub.configure(c, roster.effective(config.load()))
