"""Optional extensions of flasker, each registered with ``project.register_manager``."""
