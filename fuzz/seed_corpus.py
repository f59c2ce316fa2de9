#!/usr/bin/env python3
"""Builds the fuzz seed corpora from the behaviour fixtures (run by `make fuzz-corpus`).

corpus/validate/<case>-<n>: one ledger byte (see gastown_policy_fuzz::ledger_from_byte) and the
    `validate` payload {"settings", "request"} of policy/test_data/cases/<case>.json and of the
    open-bug reproducers in fuzz/regressions/;
corpus/settings/<name>: the settings of every case and of policy/test_data/settings/*.json.

Strings longer than 4 KiB are cut so that every seed stays under the fuzzers' -max_len.
"""
import hashlib
import json
import pathlib
import sys

TERMINAL = {"Succeeded", "Failed", "Released"}
MAX_STRING = 4096


def cut(value):
    if isinstance(value, str):
        return value[:MAX_STRING]
    if isinstance(value, list):
        return [cut(v) for v in value]
    if isinstance(value, dict):
        return {k: cut(v) for k, v in value.items()}
    return value


def ledger_bytes(case):
    ledger = case.get("ledger")
    if ledger is None:
        return [0, 0x80]
    if "error" in ledger:
        return [0x80]
    # A per-town ledger (byClaimer) gives each town's list; the header byte holds one count.
    lists = list(ledger["byClaimer"].values()) if "byClaimer" in ledger else [ledger]
    active = max(
        [
            sum(1 for item in items.get("items", []) if ((item.get("status") or {}).get("phase")) not in TERMINAL)
            for items in lists
        ]
        or [0]
    )
    return [min(active, 0x7F)]


def main():
    root = pathlib.Path(__file__).resolve().parent
    data = root.parent / "policy" / "test_data"
    out = root / "corpus"
    validate, settings = out / "validate", out / "settings"
    validate.mkdir(parents=True, exist_ok=True)
    settings.mkdir(parents=True, exist_ok=True)
    counts = [0, 0]
    # The behaviour fixtures, and the reproducers of open bugs in fuzz/regressions/.
    for path in sorted((data / "cases").glob("*.json")) + sorted((root / "regressions").glob("*.json")):
        case = json.loads(path.read_text())
        blob = json.dumps(case.get("settings"), separators=(",", ":")).encode()
        (settings / hashlib.sha1(blob).hexdigest()).write_bytes(blob)
        if "request" not in case:
            continue
        payload = json.dumps(
            cut({"settings": case.get("settings"), "request": case.get("request")}),
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        for i, b in enumerate(ledger_bytes(case)):
            (validate / f"{path.stem}-{i}").write_bytes(bytes([b]) + payload)
            counts[0] += 1
    for path in sorted((data / "settings").glob("*.json")):
        blob = json.dumps(json.loads(path.read_text()).get("settings"), separators=(",", ":")).encode()
        (settings / f"{path.stem}").write_bytes(blob)
    counts[1] = len(list(settings.iterdir()))
    print(f"seed corpus: {counts[0]} validate inputs in {validate}, {counts[1]} settings inputs in {settings}")


if __name__ == "__main__":
    sys.exit(main())
