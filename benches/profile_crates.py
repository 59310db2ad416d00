#!/usr/bin/env python3
"""Instructions per review by crate, from two callgrind profiles of the same server.

    profile_crates.py SHORT.annotate N_SHORT LONG.annotate N_LONG

Each file is `callgrind_annotate --auto=no --inclusive=no` output of a whole server run that
served N reviews. Subtracting the short run from the long one, function by function, cancels
everything that is not per review (startup, certificate generation, state loading, idle
timers); dividing by N_LONG - N_SHORT gives instructions per review. Each function's cost goes
to the crate its source file belongs to (the cargo registry path, the Rust library, the C
library or this crate's `src/`), and crates are grouped by what they do.
"""

import re
import sys
from collections import Counter

# crate name (as in the registry path) -> group
GROUPS = {
    "rustls": "TLS: rustls (records, handshake)",
    "rustls-pki-types": "TLS: rustls (records, handshake)",
    "rustls-webpki": "TLS: rustls (records, handshake)",
    "tokio-rustls": "TLS: rustls (records, handshake)",
    "ring": "TLS: ring (AES-GCM, SHA-2, X25519, ECDSA)",
    "h2": "HTTP/2 framing: h2, hpack",
    "hyper": "HTTP: hyper, hyper-util, http, httparse",
    "hyper-util": "HTTP: hyper, hyper-util, http, httparse",
    "http": "HTTP: hyper, hyper-util, http, httparse",
    "http-body": "HTTP: hyper, hyper-util, http, httparse",
    "http-body-util": "HTTP: hyper, hyper-util, http, httparse",
    "httparse": "HTTP: hyper, hyper-util, http, httparse",
    "axum": "router: axum, tower",
    "axum-core": "router: axum, tower",
    "tower": "router: axum, tower",
    "tower-layer": "router: axum, tower",
    "tower-service": "router: axum, tower",
    "serde_json": "JSON: serde_json, serde, base64, json-patch",
    "serde": "JSON: serde_json, serde, base64, json-patch",
    "serde_core": "JSON: serde_json, serde, base64, json-patch",
    "serde_path_to_error": "JSON: serde_json, serde, base64, json-patch",
    "base64": "JSON: serde_json, serde, base64, json-patch",
    "json-patch": "JSON: serde_json, serde, base64, json-patch",
    "jsonptr": "JSON: serde_json, serde, base64, json-patch",
    "tokio": "async runtime: tokio, futures, mio",
    "tokio-util": "async runtime: tokio, futures, mio",
    "futures-util": "async runtime: tokio, futures, mio",
    "futures-core": "async runtime: tokio, futures, mio",
    "mio": "async runtime: tokio, futures, mio",
    "bytes": "buffers: bytes",
    "prometheus-client": "metrics, tracing",
    "tracing": "metrics, tracing",
    "tracing-core": "metrics, tracing",
    "tracing-subscriber": "metrics, tracing",
}

LINE = re.compile(r"^\s*(-?[\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$")
REGISTRY = re.compile(r"/registry/src/[^/]+/([A-Za-z0-9_\-]+?)-\d+\.\d+[^/]*/")


# A Rust symbol's crate: the first path segment, also inside `<... as ...>` and `<impl ...>`.
SYMBOL_CRATE = re.compile(r"^[<&\s]*(?:impl\s+)?(?:dyn\s+)?([a-z_][a-z0-9_]*)::")
C_GROUPS = [
    (re.compile(r"aesni|ghash|gcm|x25519|sha256|sha512|ChaCha|poly1305|ecp_nistz|bn_|ring_core"), "TLS: ring (AES-GCM, SHA-2, X25519, ECDSA)"),
]


def group(where: str) -> str:
    m = REGISTRY.search(where)
    if m:
        return GROUPS.get(m.group(1), f"crate {m.group(1)}")
    path, _, function = where.partition(":")
    if path == "???":
        # A release build without debug info: the symbol names the crate.
        function = function.rsplit(" [", 1)[0]
        for pattern, name in C_GROUPS:
            if pattern.search(function):
                return name
        c = SYMBOL_CRATE.match(function)
        if c:
            crate = c.group(1)
            if crate in ("core", "alloc", "std"):
                return "Rust core, alloc, std (formatting, collections)"
            if crate == "storage_admission":
                return "storage-admission (decode, rules, encode)"
            for name, g in GROUPS.items():
                if name.replace("-", "_") == crate:
                    return g
            return f"crate {crate}"
        return "other"
    if path.startswith("/rustc/"):
        return "Rust core, alloc, std (formatting, collections)"
    if "/src/" in path and path.startswith("/"):
        return "storage-admission (decode, rules, encode)"
    if "malloc" in where or "free" in where.split(":")[-1]:
        return "C library: malloc, free"
    if "libc.so" in where or where.startswith("./"):
        return "C library: memcpy, syscalls"
    return "other"


def read(path: str) -> Counter:
    costs: Counter[str] = Counter()
    with open(path) as f:
        for raw in f:
            m = LINE.match(raw)
            if not m or ":" not in m.group(2) or "PROGRAM TOTALS" in m.group(2):
                continue
            costs[m.group(2)] += int(m.group(1).replace(",", ""))
    return costs


def main() -> int:
    short, n_short, long, n_long = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    reviews = n_long - n_short
    a, b = read(short), read(long)
    totals: Counter[str] = Counter()
    for where in set(a) | set(b):
        totals[group(where)] += b[where] - a[where]
    total = sum(totals.values())
    if total <= 0 or reviews <= 0:
        print("the long run did not cost more than the short one: no per-review profile")
        return 1
    print(f"{'instructions/review':>20}  share  part")
    for name, count in totals.most_common():
        if count / reviews >= 1:
            print(f"{count / reviews:>20,.0f}  {100 * count / total:4.1f}%  {name}")
    print(f"{total / reviews:>20,.0f}  100%   total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
