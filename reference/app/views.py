"""The pages: houses and their cats, a task run by the worker, and beat's last tick."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import IntegrityError

from flasker import current_project
from flasker.ext.auth import GoogleAuthManager, declare_models
from flasker.outages import find_outage

from .forms import CatForm, HouseForm
from .models import BeatRun, Cat, House
from .tasks import census

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from werkzeug.exceptions import HTTPException

app = current_project.app
celery = current_project.celery
db = current_project.db
CSRFProtect(app)

# The auth tables belong to the project whether sign-in is on or not, so that the migrations
# (9c6b3641ef1b_auth_tables) always match the models.
declare_models()
# Sign in with Google, when the stack is given a client (FLASKER__AUTH__CLIENT_ID and the
# other FLASKER__AUTH__* variables of .env.example): then every page needs a signed-in user.
if current_project.config.get("AUTH", "CLIENT_ID"):
    current_project.register_manager(GoogleAuthManager())


def render_index(form: HouseForm | None = None, status: int = 200) -> ResponseReturnValue:
    houses = House.paginate(request.args.get("page", 1, type=int), 20,
                            select=sa.select(House).order_by(House.name))
    ids = [h.id for h in houses.items]
    cat_counts = dict(db.execute(
        sa.select(Cat.house_id, sa.func.count()).where(Cat.house_id.in_(ids))
        .group_by(Cat.house_id)
    ).tuples().all())
    task_id = request.args.get("task")
    return render_template("index.html", houses=houses, cat_counts=cat_counts,
                           form=form or HouseForm(),
                           task=page_task_state(task_id) if task_id else None,
                           tick=db.get(BeatRun, "tick")), status


@app.get("/")
def index() -> ResponseReturnValue:
    return render_index()


@app.post("/houses")
def create_house() -> ResponseReturnValue:
    form = HouseForm()
    if not form.validate_on_submit():
        return render_index(form, 400)
    name = form.name.data.strip()
    db.add(House(name=name))
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        form.name.errors = [f"A house named {name!r} exists already: choose another name."]
        return render_index(form, 409)
    flash(f"House {name!r} created.")
    return redirect(url_for("index"))


@app.get("/houses/<int:house_id>")
def house(house_id: int) -> ResponseReturnValue:
    return render_house(House.get_or_404(house_id))


def render_house(house: House, form: CatForm | None = None,
                 status: int = 200) -> ResponseReturnValue:
    return render_template("house.html", house=house, form=form or CatForm()), status


@app.post("/houses/<int:house_id>/cats")
def create_cat(house_id: int) -> ResponseReturnValue:
    house = House.get_or_404(house_id)
    form = CatForm()
    if not form.validate_on_submit():
        return render_house(house, form, 400)
    name = form.name.data.strip()
    house.cats.append(Cat(name=name))
    db.commit()
    flash(f"{name} moved into {house.name}.")
    return redirect(url_for("house", house_id=house.id))


@app.post("/houses/<int:house_id>/delete")
def delete_house(house_id: int) -> ResponseReturnValue:
    house = House.get_or_404(house_id)
    db.delete(house)
    db.commit()
    flash(f"House {house.name!r} and its cats deleted.")
    return redirect(url_for("index"))


@app.post("/cats/<int:cat_id>/delete")
def delete_cat(cat_id: int) -> ResponseReturnValue:
    cat = Cat.get_or_404(cat_id)
    house_id, name = cat.house_id, cat.name
    db.delete(cat)
    db.commit()
    flash(f"{name} left.")
    return redirect(url_for("house", house_id=house_id))


@app.post("/tasks")
def enqueue() -> ResponseReturnValue:
    result = census.delay()
    flash(f"Task {result.id} sent to the worker.")
    return redirect(url_for("index", task=result.id))


def task_state(task_id: str) -> dict[str, t.Any]:
    result = celery.AsyncResult(task_id)
    state = result.state
    return {
        "id": task_id,
        "state": state,
        "result": result.result if state == "SUCCESS" else None,
        "error": repr(result.result) if state == "FAILURE" else None,
    }


def page_task_state(task_id: str) -> dict[str, t.Any]:
    """The task's state for the page, which works on while Redis is away (the result waits)."""
    try:
        return task_state(task_id)
    except Exception as e:
        if find_outage(e) is None:
            raise
        return {"id": task_id, "state": "UNKNOWN", "result": None, "error": None}


@app.get("/tasks/<task_id>")
def task_status(task_id: str) -> ResponseReturnValue:
    return jsonify(task_state(task_id))


@app.errorhandler(CSRFError)
def csrf_error(error: CSRFError) -> ResponseReturnValue:
    message = (f"{error.description} The form was not accepted and nothing changed:"
               " reload the page and send it again.")
    return render_template("error.html", title="Form expired", message=message), 400


@app.errorhandler(404)
def not_found(error: HTTPException) -> ResponseReturnValue:
    return render_template("error.html", title="Not found", message=error.description), 404
