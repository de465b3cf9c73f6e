"""Talking back to git hosts (GitHub, GitLab): PURE request building, no I/O here.

The API decides *what* to report (:mod:`farm.api.commit_status`), a worker task sends it
(:mod:`farm.worker.commit_status`); this package only says what the request looks like.
"""
