"""gunicorn entry point: ``gunicorn storyverse_ratelimit.wsgi:app``."""

from storyverse_ratelimit import create_app

app = create_app()
