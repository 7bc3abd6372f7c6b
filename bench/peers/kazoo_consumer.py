"""The Python comparator of the benchmarks (contract in bench/README.md).

A Dubbo-style consumer written plainly on Debian's python3-kazoo and the
json module, as a user would write one: get_children, every get_async
pipelined, each instance parsed with json.loads, one MetadataInfo read per
revision from the metadata report, and one URL per instance of the service.
Debian has no Hessian library for Python, so local metadata (the
MetadataService over dubbo/Hessian2) is unsupported: exit status 3.

  cold  --zk HOST:PORT --app APP --service IFACE --mode remote|local
  watch --zk HOST:PORT --app APP --service IFACE
  hold  --zk HOST:PORT [--apps N]

Only the result lines go to stdout.
"""
import json
import logging
import random
import sys
import threading
import time

from kazoo.client import KazooClient

WAIT_S = 300
UNSUPPORTED = 3


class Unsupported(Exception):
    pass


def options(argv):
    opts = {}
    for i in range(0, len(argv) - 1, 2):
        if not argv[i].startswith("--"):
            raise SystemExit("expected an --option, got " + argv[i])
        opts[argv[i][2:]] = argv[i + 1]
    return opts


def connect(hosts):
    zk = KazooClient(hosts=hosts, timeout=30)
    zk.start(timeout=30)
    return zk


def read_instances(zk, path, names, into):
    """Pipelined get_async of every name, each parsed, into `into`."""
    pending = [(name, zk.get_async(path + "/" + name)) for name in names]
    for name, result in pending:
        try:
            data, _ = result.get(timeout=WAIT_S)
        except Exception as e:  # a node gone meanwhile
            print("skipping %s: %s" % (name, e), file=sys.stderr)
            continue
        try:
            into[name] = json.loads(data)
        except ValueError as e:
            print("skipping %s: %s" % (name, e), file=sys.stderr)


def meta(inst):
    return (inst.get("payload") or {}).get("metadata") or {}


def fetch_revisions(zk, app, instances, metas):
    """One metadata report read per revision not in `metas` yet."""
    by_revision = {}
    for inst in instances:
        m = meta(inst)
        rev = m.get("dubbo.metadata.revision")
        if rev and rev != "0" and rev not in metas:
            by_revision.setdefault(rev, []).append(inst)
    pending = []
    for rev, insts in by_revision.items():
        chosen = random.choice(insts)
        if meta(chosen).get("dubbo.metadata.storage-type") != "remote":
            raise Unsupported("local metadata needs Hessian2, which Debian lacks for Python")
        pending.append((rev, zk.get_async("/dubbo/metadata/%s/%s" % (app, rev))))
    for rev, result in pending:
        data, _ = result.get(timeout=WAIT_S)
        metas[rev] = json.loads(data)


ENDPOINTS = {}


def endpoint_port(inst, m, protocol):
    value = m.get("dubbo.endpoints")
    if value:
        endpoints = ENDPOINTS.get(value)
        if endpoints is None:
            endpoints = json.loads(value)
            ENDPOINTS[value] = endpoints
        for e in endpoints:
            if e.get("protocol") == protocol:
                return e.get("port")
    return inst.get("port")


def addresses(instances, metas, iface):
    """One URL per instance per ServiceInfo of iface."""
    urls = []
    for inst in instances:
        m = meta(inst)
        info = metas.get(m.get("dubbo.metadata.revision"))
        if not info:
            continue
        for s in (info.get("services") or {}).values():
            if s.get("name") != iface:
                continue
            protocol = s.get("protocol") or "dubbo"
            port = s.get("port") or 0
            if port <= 0:
                port = endpoint_port(inst, m, protocol)
            q = {k: v for k, v in m.items() if not k.startswith("dubbo.")}
            q.update(s.get("params") or {})
            query = "&".join("%s=%s" % (k, q[k]) for k in sorted(q))
            urls.append("%s://%s:%s/%s?%s" % (protocol, inst.get("address"), port,
                                               s.get("path") or s.get("name"), query))
    return urls


def cold(o):
    if o.get("mode", "remote") == "local":
        print("unsupported")
        return UNSUPPORTED
    app, iface = o["app"], o["service"]
    start = time.monotonic_ns()
    zk = connect(o["zk"])
    path = "/services/" + app
    instances = {}
    read_instances(zk, path, zk.get_children(path), instances)
    metas = {}
    fetch_revisions(zk, app, instances.values(), metas)
    urls = addresses(instances.values(), metas, iface)
    ms = (time.monotonic_ns() - start) / 1e6
    print("result instances=%d addresses=%d ms=%.3f" % (len(instances), len(urls), ms), flush=True)
    zk.stop()
    zk.close()
    return 0


def watch(o):
    app, iface = o["app"], o["service"]
    path = "/services/" + app
    zk = connect(o["zk"])
    state = {"instances": {}, "metas": {}, "urls": [], "ready": False}
    lock = threading.Lock()

    def on_children(names):
        # kazoo calls this on its event thread, once at start and on
        # every change of the children (the watch re-armed for us).
        with lock:
            instances = state["instances"]
            now = set(names)
            for gone in [n for n in instances if n not in now]:
                del instances[gone]
            read_instances(zk, path, [n for n in names if n not in instances], instances)
            fetch_revisions(zk, app, instances.values(), state["metas"])
            urls = addresses(instances.values(), state["metas"], iface)
            changed = set(urls) != set(state["urls"])
            state["urls"] = urls
            if not state["ready"]:
                state["ready"] = True
                print("ready %d" % len(urls), flush=True)
            elif changed:
                print("change %d %d" % (time.monotonic_ns(), len(urls)), flush=True)

    zk.ChildrenWatch(path, on_children)
    until_stdin_ends()
    zk.stop()
    zk.close()
    return 0


HELD = {}


def hold(o):
    zk = connect(o["zk"])
    limit = int(o.get("apps", "-1"))
    apps = zk.get_children("/services") if zk.exists("/services") else []
    if limit >= 0:
        apps = apps[:limit]
    total = 0
    for app in apps:
        instances = {}
        path = "/services/" + app
        read_instances(zk, path, zk.get_children(path), instances)
        HELD[app] = instances
        total += len(instances)
    print("ready %d" % total, flush=True)
    until_stdin_ends()
    zk.stop()
    zk.close()
    return 0


def until_stdin_ends():
    while sys.stdin.buffer.read1(256):
        pass


def main(argv):
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if not argv:
        print("usage: kazoo_consumer.py cold|watch|hold --zk HOST:PORT ...", file=sys.stderr)
        return 2
    modes = {"cold": cold, "watch": watch, "hold": hold}
    if argv[0] not in modes:
        print("unknown mode " + argv[0], file=sys.stderr)
        return 2
    try:
        return modes[argv[0]](options(argv[1:]))
    except Unsupported as e:
        print(str(e), file=sys.stderr)
        print("unsupported", flush=True)
        return UNSUPPORTED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
