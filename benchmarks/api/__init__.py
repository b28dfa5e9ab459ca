"""The API benchmark's parts: the peers' servers (``servers.py``) and the shared data."""
