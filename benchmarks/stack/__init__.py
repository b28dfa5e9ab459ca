"""Files ``bench_stack.py`` mounts read-only into its containers at ``/bench``.

They are imported there as top-level modules (``PYTHONPATH=/bench``), never from here:
``hello.py`` (the bare gunicorn + Flask peer), ``page.py`` (the bare peers of the reference
page: its template alone, and its work without flasker), ``stacktasks.py`` (the counted task)
and ``stackapi.py`` (the REST API, only for a reference app that serves none).
"""
