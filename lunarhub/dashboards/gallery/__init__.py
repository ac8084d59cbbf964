"""The gallery: a hub service (its pages, comments, sharing policy, the dashboards' named servers)."""
