#!/usr/bin/env python3
"""Verifies the DKIM signature of a message with dkimpy, an independent verifier
(PEERS.md §7.2), the public key given instead of a DNS look-up.

usage: dkim_verify.py MESSAGE.eml TXT_RECORD_VALUE

TXT_RECORD_VALUE is what `mailtrail dkim keygen` tells to publish, e.g.
"v=DKIM1; k=ed25519; p=...". Prints one JSON object:
{"ok": bool, "d": ..., "s": ..., "a": ..., "c": ..., "h": [...], "error": ...}
and exits 0 when the signature verifies, 1 when not.
"""
import json
import sys

import dkim


def main(argv):
    path, record = argv[1], argv[2].encode()
    with open(path, "rb") as f:
        message = f.read()
    asked = []

    def dnsfunc(name, timeout=5):
        asked.append(name.decode() if isinstance(name, bytes) else name)
        return record

    verifier = dkim.DKIM(message)
    error = None
    try:
        ok = verifier.verify(dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        ok, error = False, str(e)
    tags = {}
    sigs = [v for (k, v) in verifier.headers if k.lower() == b"dkim-signature"]
    if sigs:
        try:
            tags = dkim.util.parse_tag_value(sigs[0])
        except Exception as e:  # a malformed header: report it, do not crash
            error = error or f"unparsable DKIM-Signature: {e}"
    out = {
        "ok": bool(ok),
        "signatures": len(sigs),
        "d": tags.get(b"d", b"").decode(),
        "s": tags.get(b"s", b"").decode(),
        "a": tags.get(b"a", b"").decode(),
        "c": tags.get(b"c", b"").decode(),
        "h": [h.strip() for h in tags.get(b"h", b"").decode().split(":") if h.strip()],
        "dns_asked": asked,
        "error": error,
    }
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
