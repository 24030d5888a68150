#!/usr/bin/env python3
"""Runs the build stage of deploy/docker/Dockerfile on this host, without Docker.

    tests/deploy/image_build.py [--dockerfile FILE] [--stage build] [--dir DIR]

What a `docker build` of that stage would do, step by step:
  - COPY: the named paths of the build context (the repository root) are copied into
    DIR/src, minus what .dockerignore excludes, so that a file the build needs but the
    stage does not copy (or .dockerignore drops) fails here as it would in the image;
  - RUN apt-get ... install PKGS: not run (no root, no network); instead every package
    must be installed on this host (`dpkg-query`), and after the build every pkg-config
    dependency that meson found must come from one of them (`dpkg -S` of its .pc file);
  - every other RUN: run as written with `sh -e -c` in the WORKDIR (DIR/src for
    WORKDIR /src), so `meson setup --buildtype=release build`, the ninja target, strip
    and the checks are exactly the image's.
DIR/src/build is kept between runs (only the sources are re-copied, with their times),
so a second run is incremental (`meson setup` of an existing build directory is a no-op);
it is emptied first when the stage's instructions changed (DIR/stage.sha256).
The benchmark (tests/bench/run.sh) builds its tools in that same directory, so CI makes
one release build, not two. Exit status 0 when every step succeeded.
"""
import argparse
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def instructions(path):
    """(keyword, argument text) for each instruction, continuation lines joined."""
    out, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (line.strip().startswith("#") or not line.strip()):
                continue
            if cur and line.strip().startswith("#"):
                continue  # a comment inside a continued instruction
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            kw, _, rest = cur.strip().partition(" ")
            out.append((kw.upper(), rest.strip()))
            cur = ""
    return out


def stage(instrs, name):
    """The instructions of stage `name` (after its FROM, up to the next FROM)."""
    body, inside = [], False
    for kw, rest in instrs:
        if kw == "FROM":
            if inside:
                break
            inside = re.search(r"\bAS\s+" + re.escape(name) + r"\s*$", rest, re.I) is not None
            continue
        if inside:
            body.append((kw, rest))
    if not inside and not body:
        sys.exit(f"image_build: no stage 'AS {name}' in the Dockerfile")
    return body


def dockerignore_patterns():
    path = os.path.join(REPO, ".dockerignore")
    pats = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                pats.append(line.rstrip("/"))
    return pats


def ignored(rel, pats):
    # Docker's rules (Go filepath.Match plus **); fnmatch's * also crosses '/', which
    # only matters for patterns this repository does not use. A path is excluded when it,
    # or a directory above it, matches; `!` re-includes.
    parts = rel.split("/")
    verdict = False
    for p in pats:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, pat) or (pat.startswith("**/") and fnmatch.fnmatchcase(prefix, pat[3:])):
                verdict = not neg
                break
    return verdict


def copy_into(srcs, dest, workdir, pats):
    target = dest if dest.startswith("/") else os.path.join(workdir, dest)
    for src in srcs:
        rel = os.path.normpath(src)
        full = os.path.join(REPO, rel)
        if not os.path.exists(full):
            raise SystemExit(f"image_build: COPY {src}: no such file in the build context")
        if ignored(rel, pats):
            raise SystemExit(f"image_build: COPY {src}: excluded by .dockerignore")
        if os.path.isdir(full):
            # COPY dir/ dest/ copies the directory's contents into dest.
            out = target
            for root, dirs, files in os.walk(full):
                rroot = os.path.relpath(root, REPO)
                dirs[:] = [d for d in dirs if not ignored(os.path.join(rroot, d), pats)]
                # COPY keeps symbolic links as links (gateway/include/<folder>/<folder> are
                # links); os.walk lists a link to a directory among `dirs` and does not
                # enter it, so links are recreated here, whatever they point to.
                links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
                dirs[:] = [d for d in dirs if d not in links]
                for fname in files + links:
                    frel = os.path.join(rroot, fname)
                    if ignored(frel, pats):
                        continue
                    dst = os.path.join(out, os.path.relpath(os.path.join(REPO, frel), full))
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    srcpath = os.path.join(REPO, frel)
                    if os.path.islink(srcpath):
                        if os.path.lexists(dst):
                            os.remove(dst)
                        os.symlink(os.readlink(srcpath), dst)
                    else:
                        shutil.copy2(srcpath, dst)
        else:
            dst = os.path.join(target, os.path.basename(rel)) if dest.endswith("/") or dest == "." else target
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(full, dst)


def apt_packages(cmd):
    m = re.search(r"apt-get install\s+(.*?)(&&|$)", cmd)
    return [w for w in shlex.split(m.group(1)) if not w.startswith("-")] if m else []


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == "installed"


def check_pkgconfig_deps(build, packages):
    """Every dependency meson found through pkg-config comes from an installed stage package."""
    r = subprocess.run(["meson", "introspect", "--dependencies", build], capture_output=True, text=True)
    if r.returncode != 0:
        print("image_build: meson introspect --dependencies failed:\n" + r.stderr)
        return False
    import json
    ok, seen = True, []
    for dep in json.loads(r.stdout):
        name = dep.get("name", "")
        pc = subprocess.run(["pkg-config", "--path", name], capture_output=True, text=True)
        if pc.returncode != 0:
            continue  # found another way (threads, boost, cmake): not mapped here
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(pc.stdout.strip())], capture_output=True, text=True)
        pkg = owner.stdout.split(":")[0].strip() if owner.returncode == 0 else ""
        seen.append(f"{name}<-{pkg or '?'}")
        if pkg not in packages:
            print(f"image_build: meson found dependency '{name}' in package '{pkg or 'none'}', "
                  "which the build stage does not install")
            ok = False
    print("image_build: pkg-config dependencies: " + " ".join(seen))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dockerfile", default=os.path.join(REPO, "deploy/docker/Dockerfile"))
    ap.add_argument("--stage", default="build")
    ap.add_argument("--dir", default=os.path.join(REPO, "build-image"))
    args = ap.parse_args()
    root = os.path.abspath(args.dir)
    pats = dockerignore_patterns()
    steps = stage(instructions(args.dockerfile), args.stage)
    # The build directory is reused only for the same stage text: a changed RUN line
    # (other meson options, say) starts from an empty one, as the image build would.
    import hashlib
    stamp = os.path.join(root, "stage.sha256")
    digest = hashlib.sha256(repr(steps).encode()).hexdigest()
    os.makedirs(root, exist_ok=True)
    if not os.path.exists(stamp) or open(stamp).read().strip() != digest:
        for kw, rest in steps:
            if kw == "WORKDIR":
                shutil.rmtree(os.path.join(root, rest.lstrip("/"), "build"), ignore_errors=True)
        with open(stamp, "w") as f:
            f.write(digest + "\n")
    env = dict(os.environ)
    workdir = root
    packages = []
    copied_into = set()
    for kw, rest in steps:
        if kw == "ARG":
            k, _, v = rest.partition("=")
            env.setdefault(k.strip(), v.strip())
        elif kw == "ENV":
            k, _, v = rest.partition("=")
            env[k.strip()] = v.strip()
        elif kw == "WORKDIR":
            workdir = os.path.join(root, rest.lstrip("/"))
            os.makedirs(workdir, exist_ok=True)
            if workdir not in copied_into:
                # A fresh copy of the sources each run; the build directory stays.
                for entry in os.listdir(workdir):
                    if entry != "build":
                        p = os.path.join(workdir, entry)
                        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
                copied_into.add(workdir)
        elif kw == "COPY":
            words = shlex.split(rest)
            if any(w.startswith("--from") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            copy_into(words[:-1], words[-1], workdir, pats)
            print(f"image_build: COPY {' '.join(words)}")
        elif kw == "RUN":
            if "apt-get" in rest:
                packages = apt_packages(rest)
                missing = [p for p in packages if not installed(p)]
                print(f"image_build: RUN apt-get install: {len(packages)} packages, checked with dpkg-query")
                if missing:
                    print("image_build: not installed on this host: " + " ".join(missing))
                    return 1
                continue
            print(f"image_build: RUN {rest}", flush=True)
            r = subprocess.run(["sh", "-e", "-c", rest], cwd=workdir, env=env)
            if r.returncode != 0:
                print(f"image_build: RUN failed with exit status {r.returncode}")
                return 1
        elif kw in ("LABEL", "EXPOSE", "USER", "ENTRYPOINT", "CMD", "SHELL"):
            continue
        else:
            print(f"image_build: the build stage uses {kw}, which this script does not know")
            return 1
    build = os.path.join(workdir, "build")
    if os.path.isdir(build) and packages and not check_pkgconfig_deps(build, packages):
        return 1
    print(f"image_build: the build stage succeeded in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
