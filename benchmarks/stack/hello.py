"""The bare peer of the web role: Flask's "hello", served by the same gunicorn settings.

``python -m gunicorn --config /app/services/web/gunicorn.conf.py --chdir /bench hello:app``
in the stack's own image, so that only the application differs from the web role.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, World!"
