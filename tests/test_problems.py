from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from codeintel.errors import ContractMismatchError, IndexNotFoundError, InputError
from codeintel.service.problems import PROBLEM_JSON, Problem, install_problem_handlers


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    k: int = 10


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/echo")
    def echo(body: Body):
        return body.model_dump()

    @app.get("/raise/{kind}")
    def boom(kind: str):
        raise {
            "input": InputError("bad thing"),
            "noindex": IndexNotFoundError("no index at /x"),
            "contract": ContractMismatchError("dim", 384, 768),
            "problem": Problem(409, "Conflict", "busy", "https://codeintel.dev/problems/busy", retry_after=3),
        }[kind]

    return app


def test_problem_details_for_validation_and_domain_errors():
    client = TestClient(make_app())
    r = client.post("/echo", json={"query": "q", "bogus": 1})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert body["errors"] == [{"field": "bogus", "message": "unknown field"}] and "bogus" in body["detail"]
    assert body["status"] == 422 and body["instance"] == "/echo"
    r = client.post("/echo", json={"k": "many"})
    assert {e["field"] for e in r.json()["errors"]} == {"query", "k"}
    assert client.get("/raise/input").json()["status"] == 400
    assert client.get("/raise/noindex").status_code == 503
    contract = client.get("/raise/contract").json()
    assert contract["status"] == 503 and "384" in contract["detail"] and "768" in contract["detail"]
    problem = client.get("/raise/problem").json()
    assert problem["retry_after"] == 3 and problem["type"].endswith("/busy")
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM_JSON
