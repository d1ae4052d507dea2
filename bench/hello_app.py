"""The yardsticks for the auth service, under the same gunicorn settings: a hello-world Flask app (for /refresh) and
an endpoint that does nothing but one argon2id verify with the production parameters (for /login)."""

from argon2 import PasswordHasher
from flask import Flask, request

PASSWORD = "correct horse battery staple bench"  # bench/auth_bench.py signs in with it
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DIGEST = _HASHER.hash(PASSWORD)

app = Flask(__name__)


@app.post("/hello")
def hello():
    return {"hello": "world"}


@app.post("/argon2")
def argon2_only():
    return {"verified": _HASHER.verify(_DIGEST, request.get_json()["password"])}
