"""The yardstick for the auth service: a hello-world Flask app under the same gunicorn settings."""

from flask import Flask

app = Flask(__name__)


@app.post("/hello")
def hello():
    return {"hello": "world"}
