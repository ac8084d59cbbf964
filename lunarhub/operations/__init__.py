"""Operating a deployment from the operator's shell (as root): backups and restores.

Nothing here runs in the hub or in a user's server; the CLI (`lunarhub backup`, `lunarhub restore`)
and the supervisor's scheduled backup program call it.
"""
