"""The views: the 'current_project' proxy gives the Flask app and the database session."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFProtect

from flasker import current_project

from .models import Note

app = current_project.app
db = current_project.db
CSRFProtect(app)


@app.route("/")
def index():
    notes = db.scalars(sa.select(Note).order_by(Note.id.desc())).all()
    return render_template("index.html", notes=notes)


@app.post("/notes")
def create_note():
    text = request.form.get("text", "").strip()
    if not text:
        flash("A note needs some text.", "error")
    else:
        db.add(Note(text=text))
        db.commit()
        flash("Note saved.")
    return redirect(url_for("index"))
