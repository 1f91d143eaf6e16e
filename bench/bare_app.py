"""The baseline for bench/intake.py: the least a Flask endpoint can do, a 200 for every POST."""

from flask import Flask, request

app = Flask(__name__)


@app.post("/hook")
def hook():
    request.get_data()  # read the body, as any real endpoint must
    return "", 200
