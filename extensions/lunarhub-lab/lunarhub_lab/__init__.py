"""The front end of lunarhub's JupyterLab extension (built into labextension/ at install) and its
translations (locale/, the `jupyterlab.locale` entry point). The server side is lunarhub.lab."""


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "lunarhub-lab"}]
