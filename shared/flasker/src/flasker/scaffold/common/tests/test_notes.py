"""The notes page, through Flask's test client.

Each test that uses 'db' runs in a transaction rolled back at its end: the pages see
the rows the test writes, and nothing is left for the next test. The project imports
its modules when it starts, so a test imports them inside its body, not at the top.
"""

import sqlalchemy as sa


def test_the_home_page_answers(client, db):
    response = client.get("/")
    assert response.status_code == 200
    assert "No notes yet." in response.text


def test_a_note_is_saved(client, db, csrf_token):
    from app.models import Note

    response = client.post("/notes", data={"text": "Buy milk", "csrf_token": csrf_token},
                           follow_redirects=True)
    assert "Note saved." in response.text
    assert "Buy milk" in response.text
    assert db.scalars(sa.select(Note.text)).all() == ["Buy milk"]


def test_the_note_of_the_test_before_was_rolled_back(db):
    from app.models import Note

    assert db.scalar(sa.select(sa.func.count()).select_from(Note)) == 0


def test_the_page_shows_the_rows_the_test_wrote(client, db):
    from app.models import Note

    db.add(Note(text="Written by the test"))
    db.commit()
    assert "Written by the test" in client.get("/").text


def test_an_empty_note_is_refused(client, db, csrf_token):
    from app.models import Note

    response = client.post("/notes", data={"text": "  ", "csrf_token": csrf_token},
                           follow_redirects=True)
    assert "A note needs some text." in response.text
    assert db.scalar(sa.select(sa.func.count()).select_from(Note)) == 0


def test_a_form_without_its_csrf_token_is_refused(client, db):
    assert client.post("/notes", data={"text": "Forged"}).status_code == 400


def test_the_command_line_runs_on_the_tests_database(runner):
    result = runner.invoke(["routes"])
    assert result.exit_code == 0, result.output
    assert "create_note" in result.output
