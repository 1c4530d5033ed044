"""A grid of replay configurations, one replay per point, run in parallel.

Local processes (concurrent.futures) by default; on a Ray cluster with ``ray`` set
(``"auto"`` joins the cluster ``ray start`` made on this machine, or starts a local one;
an address joins that cluster). Ray is an optional extra: ``pip install 'vmsim[ray]'``.
"""
import itertools
import os


def parse_grid(items):
    """["thp=always,never", "tlb=host,skylake"] -> [{"thp": "always", "tlb": "host"}, ...]."""
    axes = []
    for it in items:
        key, sep, vals = it.partition("=")
        if not sep or not key or not vals:
            raise ValueError(f"bad grid axis {it!r}: use KEY=V1,V2,...")
        axes.append([(key.strip(), v.strip()) for v in vals.split(",") if v.strip()])
    return [dict(p) for p in itertools.product(*axes)] if axes else [{}]


def parse_compare(text):
    """"thp=always,thp=never" or "thp=always+tlb=host,thp=never" -> a list of settings."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        d = {}
        for kv in item.split("+"):
            k, sep, v = kv.partition("=")
            if not sep or not k.strip() or not v.strip():
                raise ValueError(f"bad --compare item {kv!r}: use KEY=VALUE")
            d[k.strip()] = v.strip()
        out.append(d)
    if not out:
        raise ValueError("--compare needs KEY=VALUE items")
    return out


def make_config(base, settings):
    from vmsim.replay.run import ReplayConfig
    cfg = ReplayConfig(**base)
    for k, v in settings.items():
        cfg.set(k, v)
    return cfg


def run_point(path, base, settings):
    """One grid point's replay (runs in a worker process): its result dict."""
    from vmsim.replay.run import replay
    cfg = make_config(base, settings)
    r = replay(path, cfg)
    r["label"] = ",".join(f"{k}={v}" for k, v in settings.items()) or "default"
    return r


def sweep(path, points, base=None, jobs=None, ray=None, on_done=None):
    """Results of replaying ``path`` once per settings dict in ``points``, in order."""
    base = dict(base or {})
    for s in points:                      # a bad key fails here, before any worker starts
        make_config(base, s)
    if ray:
        return _sweep_ray(path, points, base, ray, on_done)
    jobs = jobs or min(len(points), os.cpu_count() or 1)
    if jobs <= 1 or len(points) == 1:
        out = []
        for s in points:
            out.append(run_point(path, base, s))
            if on_done:
                on_done(out[-1])
        return out
    import concurrent.futures as cf
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")   # fresh interpreters: no forked numba state
    results = [None] * len(points)
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
        futs = {ex.submit(run_point, path, base, s): i for i, s in enumerate(points)}
        for f in cf.as_completed(futs):
            results[futs[f]] = f.result()
            if on_done:
                on_done(results[futs[f]])
    return results


def _reachable(address):
    """A cluster address (HOST:PORT, or ray://HOST:PORT) that takes no TCP connection
    is said now: ray.init retries such an address for minutes."""
    import socket
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--ray {address}: use auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise RuntimeError(f"--ray {address}: cannot reach the cluster "
                           f"({e.strerror or e})") from None


def _sweep_ray(path, points, base, address, on_done):
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'vmsim[ray]'") from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        elif address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False)
            except (ConnectionError, RuntimeError):
                ray.init(include_dashboard=False, log_to_driver=False)
        else:
            _reachable(address)
            ray.init(address=address, log_to_driver=False)
    remote = ray.remote(run_point)
    path = os.path.abspath(path)
    refs = [remote.remote(path, base, s) for s in points]
    if on_done:
        pending = list(refs)
        while pending:                    # each point as it finishes (a progress bar)
            done, pending = ray.wait(pending, num_returns=1)
            on_done(ray.get(done[0]))
    return ray.get(refs)
