"""schemathesis hooks for `openapi_schemathesis.rs` (loaded through SCHEMATHESIS_HOOKS).

One hook, and it disables no check: it makes the generated client keep the one rule of
the `Idempotency-Key` header that JSON Schema cannot state, "a new key for each distinct
request" (the header's description; draft-ietf-httpapi-idempotency-key-header). A
generator draws the same short key for different bodies, and the server then rightly
answers 422 (or replays the first request's answer, a 201 naming a resource that may be
deleted since). A schema-valid key is replaced by a fresh random one; a schema-violating
key (negative testing) is left as drawn, so its rejection is still checked.
"""

import re
import uuid

import schemathesis

_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        value = headers[name]
        if isinstance(value, str) and _VALID_KEY.fullmatch(value):
            headers[name] = uuid.uuid4().hex
