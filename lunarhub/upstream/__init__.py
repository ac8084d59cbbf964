"""Workarounds of upstream bugs, one module per workaround (link, version range, canary test).
"""
