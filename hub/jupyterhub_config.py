# JupyterHub config of lunarhub: thin on purpose. Everything comes from the one
# deployment file ($LUNARHUB_CONFIG, default hub/lunarhub.yaml) via lunarhub.platform.hub.
from lunarhub import config
from lunarhub.config import roster
from lunarhub.platform import hub
from lunarhub.upstream import jupyterhub_dashboard_consent, jupyterhub_shares

# Each refuses to start on a JupyterHub release it was not checked on.
jupyterhub_shares.apply()  # group shares reach tokens (lunarhub/upstream/jupyterhub_shares.py)
c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
deployment = roster.effective(config.load())
# No "Authorize access" page for dashboards and for this deployment's joint project servers.
jupyterhub_dashboard_consent.apply([config.project_hub_name(p) for p in deployment.projects])
hub.configure(c, deployment)
# Shares through the hub's own API follow the owner's data (lunarhub/platform/hub/lab_shares.py).
hub.install_share_policy(deployment)
