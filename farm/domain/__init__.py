"""The domain: what farm *is*, free of how it talks to the world.

Records the store returns, status words, the build/job state rules, release and
garbage-collection rules, job specs and the worker<->coordinator messages. Nothing
here imports Celery, Docker, SQLAlchemy, HTTP or any other farm package except the
error tree (``farm.errors``, itself a leaf): every other layer points here.
"""
