"""Runs in the hub process (as root) and in the operator's CLI: JupyterHub settings, login, spawner,
system accounts, kernels, the supervisor, the hub REST client.
"""
