"""Plumbing the StoryVerse Flask services (auth, rate limiting) share, so neither keeps a copy of the other's:

- ``health``: ``/healthz`` (liveness) and ``/readyz`` (PostgreSQL and Redis reachable) on a service's blueprint

Facts that cross a service boundary (key formats, header names, codes) are ``storyverse_contracts``, not here.
"""
