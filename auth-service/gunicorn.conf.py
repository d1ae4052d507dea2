"""Gunicorn settings every deployment of the auth service shares (gunicorn reads ./gunicorn.conf.py from its working
directory, or from --chdir). Workers, threads and timeouts stay on the command line / GUNICORN_CMD_ARGS."""

# Access and error logs never carry query strings, credentials or tokens (storyverse_auth/access_log.py).
logger_class = "storyverse_auth.access_log.RedactingLogger"
