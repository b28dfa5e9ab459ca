"""The views: the 'current_project' proxy gives the Flask app and the database session."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFProtect

from flasker import current_project

from .models import Note
from .tasks import add

app = current_project.app
celery = current_project.celery
db = current_project.db
CSRFProtect(app)


@app.route("/")
def index():
    notes = db.scalars(sa.select(Note).order_by(Note.id.desc()).limit(20)).all()
    return render_template("index.html", notes=notes, task_id=request.args.get("task"))


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


@app.post("/tasks")
def enqueue():
    result = add.delay(2, 3)
    flash(f"Task {result.id} sent to the worker.")
    return redirect(url_for("index", task=result.id))


@app.get("/tasks/<task_id>")
def task_status(task_id: str):
    result = celery.AsyncResult(task_id)
    return jsonify(id=task_id, state=result.state,
                   result=result.result if result.successful() else None)
