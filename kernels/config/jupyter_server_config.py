# Users' servers read this folder through JUPYTER_CONFIG_PATH (lunarhub.platform.kernels): what
# needs a path lives here, plain values in jupyter_server_config.json next to it.
from pathlib import Path

c = get_config()  # noqa: F821 - provided by the Jupyter config loader
# JupyterLab's defaults for every user (lab-settings/overrides.json): no news feed, no update check
# (the hosts reach no internet), and no extension manager (it searches PyPI); a user may still
# change their own settings.
c.LabApp.app_settings_dir = str(Path(__file__).resolve().parent / "lab-settings")
