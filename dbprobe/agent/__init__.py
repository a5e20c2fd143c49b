"""``dbprobe agent``: always on, following every server of the host, exported to Prometheus."""
