"""Schemathesis against /api/v1/openapi.json, in process: generated requests (valid
and invalid) to every operation; no answer is a 500 and every answer matches the
document (status code, content type, body schema). Bounded: a few examples per
operation. The event stream never ends, so it is left to the load test."""
import pytest

pytest.importorskip("starlette")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

import cowdb  # noqa: E402
from cowdb.server import create_app  # noqa: E402
from cowdb.server.accounts import Accounts  # noqa: E402

_db = cowdb.open()
with _db.write("seed", author="seed") as _tx:
    _tx[b"apple"] = b"red"
    _tx[b"\x00bin"] = b"\xff\x00"
_db.branch("dev")
_db.tag("v1")
_accounts = Accounts()
TOKEN = _accounts.add("admin", "admin")
app = create_app(_db, accounts=_accounts)
app.state.server.limiter.limit = 10 ** 9     # the checks send bad tokens on purpose

schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app).exclude(
    path="/events")


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    # positive_data_acceptance is left out: a schema-valid string is not always a
    # meaningful cursor, time or ref, and those are rightly 400
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                           excluded_checks=[positive_data_acceptance])
