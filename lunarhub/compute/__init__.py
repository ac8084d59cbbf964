"""dask-gateway: its configuration, the backends and authenticated front that run in the gateway process, render.
"""
