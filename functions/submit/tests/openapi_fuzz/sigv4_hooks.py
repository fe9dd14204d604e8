"""Schemathesis hooks for the submit URL: every request is signed with SigV4 (service `lambda`) as sent.

The credentials come from GAMEFORGE_FUZZ_ACCESS_KEY_ID, GAMEFORGE_FUZZ_SECRET_ACCESS_KEY, GAMEFORGE_FUZZ_SESSION_TOKEN
and the region from GAMEFORGE_FUZZ_REGION (functions/submit/tests/openapi_fuzz.rs sets them). The signature is made
on the prepared request (final URL, headers and body bytes), replacing whatever `Authorization` value schemathesis
generated for the document's `sigv4` scheme; a case without that header is sent unsigned.
"""

import os

import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class SigV4(requests.auth.AuthBase):
    def __init__(self):
        self.credentials = Credentials(
            os.environ["GAMEFORGE_FUZZ_ACCESS_KEY_ID"],
            os.environ["GAMEFORGE_FUZZ_SECRET_ACCESS_KEY"],
            os.environ.get("GAMEFORGE_FUZZ_SESSION_TOKEN") or None,
        )
        self.region = os.environ.get("GAMEFORGE_FUZZ_REGION", "us-east-1")

    def __call__(self, prepared):
        headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("authorization", "x-amz-date")}
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
            prepared.body = body
        signed = AWSRequest(method=prepared.method, url=prepared.url, data=body, headers=headers)
        SigV4Auth(self.credentials, "lambda", self.region).add_auth(signed)
        for name, value in signed.headers.items():
            prepared.headers[name] = value
        return prepared


@schemathesis.hook
def before_call(context, case, kwargs):
    # A case without the `sigv4` scheme's header is schemathesis testing a request without credentials: it goes
    # unsigned, and the URL must refuse it.
    if any(name.lower() == "authorization" for name in (case.headers or {})):
        kwargs["auth"] = SigV4()
