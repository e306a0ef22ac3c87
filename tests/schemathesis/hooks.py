"""Schemathesis hooks for mailtrail's API run (scripts/test.sh, section "schemathesis").

`POST /api/v1/bounces` takes a raw report as `message/rfc822`, a media type
schemathesis has no serializer for; the generated string is sent as its bytes.
"""

import schemathesis


@schemathesis.serializer("message/rfc822")
def rfc822(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")
