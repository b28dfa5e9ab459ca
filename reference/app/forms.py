"""The forms (Flask-WTF): validated server-side, each carrying its CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class HouseForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[
        DataRequired(message="A house needs a name."),
        Length(max=100, message="A house's name has at most 100 characters."),
    ])


class CatForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[
        DataRequired(message="A cat needs a name."),
        Length(max=50, message="A cat's name has at most 50 characters."),
    ])

