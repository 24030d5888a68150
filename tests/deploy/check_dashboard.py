"""Checks deploy/grafana/sparkgate.json: valid JSON, a Prometheus data source variable that
every panel and query uses, unique panel ids, panels inside the 24-column grid, and PromQL
that names only sparkgate's metric families (docs/kubernetes.md).

    python3 tests/deploy/check_dashboard.py DASHBOARD.json

Prints the problems and exits 1 if there are any.
"""
import json
import re
import sys

# The metric families of issue 5 (and sparkgate_identity_rejections_total, which the
# gateway already exports). A histogram is queried through its _bucket series.
KNOWN = {
    "sparkgate_rpcs_total", "sparkgate_rpc_duration_seconds", "sparkgate_bytes_total",
    "sparkgate_active_streams", "sparkgate_sessions", "sparkgate_sessions_created_total",
    "sparkgate_sessions_expired_total", "sparkgate_downstream_connections",
    "sparkgate_upstream_connections", "sparkgate_backend_healthy", "sparkgate_auth_failures_total",
    "sparkgate_identity_rejections_total", "sparkgate_quota_rejections_total",
    "sparkgate_config_reloads_total", "sparkgate_build_info",
}
HISTOGRAMS = {"sparkgate_rpc_duration_seconds"}
DATASOURCE_UID = "${datasource}"


def family(name):
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in HISTOGRAMS:
            return base
    return name


def main(path):
    problems = []
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: {e}")
        return 1

    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no template variable 'datasource' of type datasource for Prometheus")

    def check_ds(where, value):
        if not isinstance(value, dict) or value.get("uid") != DATASOURCE_UID or value.get("type") != "prometheus":
            problems.append(f"{where}: datasource must be {{type: prometheus, uid: {DATASOURCE_UID}}} (got {value!r})")

    for name, v in variables.items():
        if v.get("type") == "query":
            check_ds(f"variable {name}", v.get("datasource"))

    ids = set()
    used = set()
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    if not panels:
        problems.append("no panels")
    for p in panels:
        where = f"panel {p.get('id')} ({p.get('title')!r})"
        if p.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")) or g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"{where}: gridPos {g} is not inside the 24-column grid")
        if p.get("type") == "row":
            continue
        check_ds(where, p.get("datasource"))
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"{where}: no queries")
        for t in targets:
            check_ds(f"{where} query {t.get('refId')}", t.get("datasource"))
            expr = t.get("expr", "")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                problems.append(f"{where}: unbalanced brackets in {expr!r}")
            names = re.findall(r"\bsparkgate_[a-z_]+", expr)
            if not names:
                problems.append(f"{where}: query {expr!r} names no sparkgate metric")
            for n in names:
                if family(n) not in KNOWN:
                    problems.append(f"{where}: unknown metric {n}")
                used.add(family(n))
    for v in variables.values():
        for n in re.findall(r"\bsparkgate_[a-z_]+", json.dumps(v.get("query", ""))):
            if family(n) not in KNOWN:
                problems.append(f"variable {v.get('name')}: unknown metric {n}")

    missing = KNOWN - used
    if missing:
        problems.append("no panel shows " + ", ".join(sorted(missing)))
    for p in problems:
        print(f"{path}: {p}")
    if not problems:
        print(f"{path}: {len(panels)} panels, {len(used)} metric families, datasource variable ok")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
