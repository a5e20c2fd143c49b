"""dbprobe: an eBPF profiler for PostgreSQL and MySQL/MariaDB."""

__version__ = "0.1.0"
