"""The tasks, run by a real Celery worker (the 'celery_worker' fixture) through the broker.

A worker sees committed rows only: a test that uses it commits, and the fixture empties
the tables when the test ends.
"""

from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa


def test_a_task_runs_in_the_worker(celery_worker):
    from app.tasks import add

    assert add.delay(2, 3).get(timeout=30) == 5


def test_the_page_sends_a_task_and_reports_its_result(client, celery_worker, csrf_token):
    response = client.post("/tasks", data={"csrf_token": csrf_token})
    assert response.status_code == 302
    task_id = parse_qs(urlsplit(response.location).query)["task"][0]

    from app.tasks import add

    assert add.AsyncResult(task_id).get(timeout=30) == 5
    status = client.get(f"/tasks/{task_id}").json
    assert status == {"id": task_id, "state": "SUCCESS", "result": 5}


def test_a_task_sees_the_rows_the_test_committed(db, celery_worker):
    from app.models import Note
    from app.tasks import tick

    db.add(Note(text="written by the test"))
    db.commit()
    assert tick.delay().get(timeout=30) == 2
    assert sorted(db.scalars(sa.select(Note.text))) == ["beat tick", "written by the test"]


def test_the_rows_of_the_worker_test_are_gone(db):
    from app.models import Note

    assert db.scalar(sa.select(sa.func.count()).select_from(Note)) == 0
