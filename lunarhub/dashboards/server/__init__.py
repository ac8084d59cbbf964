"""A dashboard's own process: panel serve of one immutable snapshot, behind the hub-authenticated proxy."""
