#!/usr/bin/env python3
"""Proves that the build enforces the gateway's module layering.

    tests/layering/check_layering.py BUILD_DIR

The dependency rule (docs/architecture.md, "Modules and the dependency rule") is written
once more below, as RULE: the folders of gateway/ and the folders each one may use
directly. Each folder is its own static library (gateway/<folder>/meson.build), compiled
with only the include roots of the libraries it depends on.

For every library this takes the real compile command of one of its files from
BUILD_DIR/compile_commands.json and runs the preprocessor with it on a probe that asks
__has_include for every header of every gateway folder (with the library's own folder
added as the quote directory, as it is for a file that lives there). A header must be
visible exactly when its folder is the library itself or in the transitive closure of
its RULE entry; any difference is a failure (a wrong-way include that would compile, or
an allowed one that would not).

Then two real compiles with the same flags, as the issue states them: a file in
gateway/http2/ that includes a gateway/proxy/ header, and a file in gateway/config/ that
includes a gateway/routing/ header, must both fail with "No such file or directory" -
and the same commands compiling the folder's own header must succeed, so that the
failure is the include and nothing else. Last, no gateway source may include with a
relative path ("../x.h"), which would step around the include roots.

One line per check (PASS/FAIL); the last line is "N passed, N failed". Exit status 0
only if nothing failed.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

# folder -> the folders it may use directly. Keep in step with gateway/*/meson.build
# and docs/architecture.md.
RULE = {
    "base": [],
    "grpcwire": [],
    "http2": [],
    "spark": ["grpcwire"],
    "observe": ["base", "grpcwire", "spark"],
    "config": ["base", "spark"],
    "redis": ["base"],
    "policy": ["base", "config", "http2", "redis"],
    "routing": ["base", "config", "grpcwire", "http2", "observe", "redis", "spark"],
    "upstream": ["base", "config", "grpcwire", "http2", "observe"],
    "trace": ["base", "config", "observe"],
    "engines": ["base", "config", "grpcwire", "observe", "redis"],
    "proxy": ["base", "config", "engines", "grpcwire", "http2", "observe", "policy", "routing", "spark", "trace",
              "upstream"],
    "admin": ["config", "grpcwire", "observe", "routing"],
    "server": ["admin", "base", "config", "engines", "grpcwire", "http2", "observe", "policy", "proxy", "redis", "routing",
               "spark", "trace", "upstream"],
}

# The two cases the issue names: (library folder, forbidden header, own header).
HEADLINE = [
    ("http2", "proxy/rpc_stream.h", "http2/connection.h"),
    ("config", "routing/router.h", "config/config.h"),
]

passed = 0
failed = 0


def report(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print(("PASS " if ok else "FAIL ") + what, flush=True)


def closure(folder):
    seen = set()
    todo = list(RULE[folder])
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(RULE[f])
    return seen


def compile_args(entry, source, out_flags):
    """The entry's command with `source` as the input and `out_flags` instead of -c/-o/-M*."""
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    if os.path.basename(args[0]) == "ccache":
        args = args[1:]
    result = [args[0]]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MQ", "-MT"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD") or a == entry["file"] or os.path.basename(a) == os.path.basename(entry["file"]):
            continue
        result.append(a)
    return result + out_flags + [source]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    src_gateway = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "gateway"))
    with open(os.path.join(build, "compile_commands.json")) as f:
        commands = json.load(f)

    # The folders on disk must be exactly the folders of the rule.
    on_disk = sorted(d for d in os.listdir(src_gateway)
                     if os.path.isdir(os.path.join(src_gateway, d)) and d != "include")
    report(on_disk == sorted(RULE), "every folder of gateway/ has a rule, every rule a folder "
           f"(on disk: {' '.join(on_disk)})")

    headers = {d: sorted(h for h in os.listdir(os.path.join(src_gateway, d)) if h.endswith(".h")) for d in RULE}

    # One compile command per library: a file of that folder, compiled into its library.
    entry_of = {}
    for e in commands:
        path = os.path.normpath(os.path.join(e["directory"], e["file"]))
        rel = os.path.relpath(path, src_gateway)
        parts = rel.split(os.sep)
        if len(parts) == 2 and parts[0] in RULE and parts[1].endswith(".cc"):
            entry_of.setdefault(parts[0], e)

    with tempfile.TemporaryDirectory() as tmp:
        for lib in sorted(RULE):
            e = entry_of.get(lib)
            if e is None:
                report(False, f"{lib}: no compile command for a file of gateway/{lib}/ in compile_commands.json")
                continue
            allowed = closure(lib) | {lib}
            probe = os.path.join(tmp, f"probe_{lib}.cc")
            with open(probe, "w") as f:
                for d in sorted(RULE):
                    for h in headers[d]:
                        f.write(f'#if __has_include("{d}/{h}")\nSG_VISIBLE {d}/{h}\n#else\nSG_HIDDEN {d}/{h}\n#endif\n')
            args = compile_args(e, probe, ["-iquote", os.path.join(src_gateway, lib), "-E", "-P", "-o", "-"])
            r = subprocess.run(args, cwd=e["directory"], capture_output=True, text=True)
            if r.returncode != 0:
                report(False, f"{lib}: the preprocessor failed: {r.stderr.strip()[:500]}")
                continue
            seen = {name: kind for kind, name in re.findall(r"^SG_(VISIBLE|HIDDEN) (\S+)$", r.stdout, re.M)}
            for d in sorted(RULE):
                want = d in allowed
                wrong = [h for h in headers[d] if (seen.get(f"{d}/{h}") == "VISIBLE") != want]
                what = "may" if want else "may not"
                if wrong:
                    report(False, f"gateway/{lib}/ {what} include {d}/, but "
                           f"{'cannot see' if want else 'can see'} {', '.join(d + '/' + h for h in wrong)}")
                else:
                    report(True, f"gateway/{lib}/ {what} include {d}/ ({len(headers[d])} headers "
                           f"{'visible' if want else 'not found'})")

        for lib, forbidden, own in HEADLINE:
            e = entry_of.get(lib)
            if e is None:
                report(False, f"{lib}: no compile command")
                continue
            # A header that does not exist would "fail to compile" whatever the rule says.
            if not os.path.isfile(os.path.join(src_gateway, forbidden)):
                report(False, f"gateway/{forbidden} does not exist: the wrong-way include proves nothing")
                continue
            for header, should_compile in ((forbidden, False), (own, True)):
                probe = os.path.join(tmp, f"headline_{lib}.cc")
                with open(probe, "w") as f:
                    f.write(f'#include "{header}"\nint layering_probe = 0;\n')
                args = compile_args(e, probe, ["-iquote", os.path.join(src_gateway, lib), "-fsyntax-only"])
                r = subprocess.run(args, cwd=e["directory"], capture_output=True, text=True)
                if should_compile:
                    report(r.returncode == 0, f"a file in gateway/{lib}/ including {header} compiles"
                           + ("" if r.returncode == 0 else f": {r.stderr.strip()[:500]}"))
                else:
                    missing = f"{header}: No such file or directory" in r.stderr
                    report(r.returncode != 0 and missing,
                           f"a file in gateway/{lib}/ including {header} fails to compile"
                           + (" (header not found)" if missing else f" - unexpected result: exit {r.returncode} "
                              f"{r.stderr.strip()[:500]}"))

    relative = []
    for d in RULE:
        for name in os.listdir(os.path.join(src_gateway, d)):
            if not name.endswith((".h", ".cc")):
                continue
            with open(os.path.join(src_gateway, d, name), errors="replace") as f:
                for n, line in enumerate(f, 1):
                    if re.match(r'\s*#\s*include\s*[<"](\.\.?/|/)', line):
                        relative.append(f"gateway/{d}/{name}:{n}")
    report(not relative, "no gateway source includes by a relative or absolute path"
           + (": " + ", ".join(relative) if relative else ""))

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
