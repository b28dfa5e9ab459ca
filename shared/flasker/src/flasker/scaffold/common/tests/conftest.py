"""Fixtures of __PROJECT_NAME__'s tests.

flasker's pytest plugin (flasker.testing) gives 'project', 'app', 'client', 'runner',
'db' (a transaction rolled back after each test) and 'celery_worker' (a real worker):
the project is default.cfg beside this folder, on a temporary SQLite database. Run the
tests on PostgreSQL with 'pytest --flasker-db postgresql' (a container: needs Docker),
and the worker on Redis with '--flasker-broker redis'. Add the project's own fixtures here.
"""

import re

import pytest


@pytest.fixture
def csrf_token(client):
    """The CSRF token of the client's session, as the home page's forms carry it."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert match, "the home page has no form with a CSRF token"
    return match.group(1)
