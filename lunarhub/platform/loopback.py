"""Nothing a lab account listens on answers another account (docs/security.md, "loopback").

Kernels, dashboards and the Publish form listen on Unix sockets in private folders, but some
listeners of a user's processes have to stay TCP: dask-gateway's schedulers and workers serve
their dashboards on loopback ports (LocalBackend hard-codes ``--dashboard-address
127.0.0.1:0``), ipykernel keeps a subprocess pipe, and anything a user starts in a terminal.
One nftables table makes the boundary hold for all of them without knowing their ports:

- on the connector's side (output hook, first packet of a connection), the connection is
  marked with the connector's uid if the connector is a lunarhub account;
- a packet a lunarhub account's socket sends on a connection marked with another account's
  uid (the listener's SYN-ACK) is dropped. Root (the hub, the proxy, the gateway) and
  service accounts (the sites' nginx) are never marked, so they reach every listener, and
  an account keeps talking to its own listeners and to the sites.

Rules match the socket's uid (``meta skuid``), which the kernel records at ``socket()``:
a user cannot forge it. The table is host-wide (system accounts are host-wide) and only ever
gains accounts; ``admit`` is idempotent. The other account's connection attempt gets no
answer and times out (a SYN-ACK cannot be turned into a reset for the connector).
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess

from lunarhub.config import ACCOUNT_MARKER, Deployment

TABLE = "lunarhub"
NFT_CANDIDATES = ("/usr/sbin/nft", "/sbin/nft")

RULES = f"""
table inet {TABLE} {{
  map marks {{ typeof meta skuid : ct mark; }}
  set accounts {{ typeof meta skuid; }}
  set same {{ typeof meta skuid . ct mark; }}
  chain out {{
    type filter hook output priority 0; policy accept;
    oif lo ct state new ct mark set meta skuid map @marks
    oif lo meta skuid . ct mark @same accept
    oif lo meta skuid @accounts drop
  }}
}}
"""


class LoopbackFilterError(RuntimeError):
    pass


def enabled(d: Deployment) -> bool:
    return d.hub.isolation == "system-users" and d.hub.loopback_filter == "nftables"


def nft_path() -> str | None:
    return shutil.which("nft") or next((p for p in NFT_CANDIDATES if shutil.which(p)), None)


def _nft(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = nft_path()
    if exe is None:
        raise LoopbackFilterError("hub.loopback_filter is 'nftables' but the nft command is missing: "
                                  "apt-get install nftables (or set hub.loopback_filter: none)")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=30)


def problems(d: Deployment) -> list[tuple[str, str]]:
    """Start-time check: the filter can be installed here (root, nft, nf_tables in the kernel)."""
    if not enabled(d):
        return []
    if nft_path() is None:
        return [("hub.loopback_filter", "'nftables' needs the nft command: apt-get install nftables, "
                 "or set hub.loopback_filter: none (then other accounts reach users' TCP listeners)")]
    probe = _nft("--check", "-f", "-", stdin=RULES)
    if probe.returncode != 0:
        return [("hub.loopback_filter", "this kernel refuses the loopback rules "
                 f"({probe.stderr.strip()[:300]}); set hub.loopback_filter: none to run without them")]
    return []


def install() -> None:
    """Create the table if it is not there; existing admissions stay."""
    if _nft("list", "table", "inet", TABLE).returncode == 0:
        return
    r = _nft("-f", "-", stdin=RULES)
    if r.returncode != 0:
        raise LoopbackFilterError(f"installing the loopback rules failed: {r.stderr.strip()}")


def admit(uid: int) -> None:
    """Put the account with `uid` behind the filter (its listeners answer only itself and root)."""
    if uid == 0:
        raise LoopbackFilterError("root is never filtered: the hub, the proxy and the gateway are root")
    install()
    for element in (f"marks {{ {uid} : {uid} }}", f"accounts {{ {uid} }}", f"same {{ {uid} . {uid}, {uid} . 0 }}"):
        setname, _, value = element.partition(" ")
        r = _nft("add", "element", "inet", TABLE, setname, value)
        if r.returncode != 0:
            raise LoopbackFilterError(f"admitting uid {uid} to the loopback filter failed: {r.stderr.strip()}")


def forget(uid: int) -> None:
    """Take `uid` out of the filter (an account removed from the host)."""
    for setname, value in (("marks", f"{{ {uid} : {uid} }}"), ("accounts", f"{{ {uid} }}"),
                           ("same", f"{{ {uid} . {uid}, {uid} . 0 }}")):
        _nft("delete", "element", "inet", TABLE, setname, value)


def admit_account(d: Deployment, name: str) -> None:
    """`admit` for a system account by name, when the deployment turns the filter on."""
    if enabled(d):
        admit(pwd.getpwnam(name).pw_uid)


def admit_existing(d: Deployment) -> list[str]:
    """At `up`: install the table and admit every hub user's account that lunarhub made already
    (servers and clusters that outlived a restart are covered before anything new starts)."""
    if not enabled(d):
        return []
    install()
    out = []
    for name in sorted(d.users):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue  # made, and admitted, at its first spawn
        if ACCOUNT_MARKER in (entry.pw_gecos or "") and entry.pw_uid != 0:
            admit(entry.pw_uid)
            out.append(name)
    return out


def admitted() -> set[int]:
    """The uids behind the filter now (empty when the table is absent)."""
    r = _nft("-j", "list", "set", "inet", TABLE, "accounts")
    if r.returncode != 0:
        return set()
    out: set[int] = set()
    for item in json.loads(r.stdout).get("nftables", []):
        for elem in item.get("set", {}).get("elem", []):
            if isinstance(elem, int):
                out.add(elem)
    return out
