"""Runs in users' kernels and dask workers: terrain analysis and the doctor.

Nothing here imports hub-side code.
"""
