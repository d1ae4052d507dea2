"""gunicorn entry point: ``gunicorn --chdir auth-service wsgi:app``."""

from storyverse_auth import create_app

app = create_app()
