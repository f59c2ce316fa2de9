#!/usr/bin/env python3
"""Turns a crash or invariant failure of the `validate` fuzz target into a fixture skeleton.

    python3 fuzz/artifact_to_fixture.py fuzz/artifacts/validate/crash-<hash> > \
        policy/test_data/cases/regression-<what>.json

The input is one ledger byte and the `validate` payload (see fuzz/src/lib.rs). Fill in
"expect" (and the description) by hand with what the policy must answer.
"""
import json
import sys


def main(path):
    data = open(path, "rb").read()
    header, payload = (data[0], data[1:]) if data else (0, b"")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        sys.exit(f"{path}: the payload is not JSON ({e}); add it as a raw-payload test instead")
    if not isinstance(body, dict):
        sys.exit(f"{path}: the payload is JSON but not an object: {payload[:80]!r}")
    fixture = {
        "description": f"regression: fuzz artifact {path.rsplit('/', 1)[-1]}",
        "settings": body.get("settings"),
        "request": body.get("request"),
        "expect": {"accepted": "<fill in>", "code": "<fill in>", "messageContains": []},
    }
    # gastown_policy_fuzz::ledger_from_byte: 0x00-0x7f active claims, 0xff u64::MAX (written
    # here as 1000 items: raise it if the limit in the settings is higher), other bytes an error
    # (0xfe: with an empty message).
    if header == 0xFF:
        active = 1000
    elif header >= 0x80:
        active = None
        fixture["ledger"] = {"error": "" if header == 0xFE else "the API server is not reachable"}
    else:
        active = header
    if active is not None:
        fixture["ledger"] = {
            "items": [{"metadata": {"name": f"a{i}"}, "status": {"phase": "Running"}} for i in range(active)]
        }
    json.dump(fixture, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
