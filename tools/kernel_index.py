"""Regenerate vmsim/explore/kernel_index.json: each kernel function the model names ->
where Linux 6.18.2 defines it ("mm/memory.c:5123"), for the explorer's source links.

    python3 tools/kernel_index.py [LINUX_SRC]     (default: ../shared/linux-6.18.2)

The names are the model's functions and methods (vmsim/arch, mm, kernel, fs, ipc) without
a single leading underscore (vmsim's helpers), as the function-graph tracer shows them. A definition is a line
starting at column 0 with ``NAME(`` after its return type (or alone: the type on the
line before) whose parameter list is followed by ``{``, or ``#define NAME(``, or
``SYSCALL_DEFINEn(NAME`` / ``DEFINE_IDTENTRY*(NAME``. Where several match (config
alternatives, stubs), a file the vmsim function's docstring names wins, then .c files,
then the directory order of DIRS.
"""
import ast
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "vmsim", "explore", "kernel_index.json")
DIRS = ("mm", "arch/x86/mm", "arch/x86/include", "arch/x86/kernel", "kernel", "fs",
        "include/linux", "include/asm-generic", "arch/x86", "include", "lib", "ipc", "security")


def model_names():
    """{name: docstring} of the model's public functions and methods."""
    names = {}
    for pkg in ("arch", "mm", "kernel", "fs", "ipc"):
        for root, _, files in os.walk(os.path.join(REPO, "vmsim", pkg)):
            for fn in files:
                if not fn.endswith(".py"):
                    continue
                tree = ast.parse(open(os.path.join(root, fn)).read())
                for node in ast.walk(tree):
                    n = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                        else "_"
                    # as the tracer: _helpers are vmsim's, __kernel_names are the kernel's
                    if not n.startswith("_") or (n.startswith("__") and not n.endswith("__")):
                        names.setdefault(n, ast.get_docstring(node) or "")
    return names


def sources(src):
    for d in DIRS:
        top = os.path.join(src, d)
        for root, _, files in os.walk(top):
            for fn in sorted(files):
                if fn.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(root, fn), src)


def definitions(src, names):
    """{name: [(path, line)]} of every definition found."""
    found = {}
    ident = re.compile(r"([A-Za-z_]\w*)\s*\(")
    special = re.compile(r"^(?:SYSCALL_DEFINE\d|DEFINE_IDTENTRY\w*)\(\s*(\w+)")
    define = re.compile(r"^#\s*define\s+(\w+)\(")
    seen = set()
    for rel in sources(src):
        if rel in seen:
            continue
        seen.add(rel)
        try:
            text = open(os.path.join(src, rel), errors="replace").read()
        except OSError:
            continue
        lines = text.split("\n")
        for i, ln in enumerate(lines):
            if not ln or ln[0] in " \t/*}{":
                continue
            m = special.match(ln) or define.match(ln)
            if m:
                if m.group(1) in names:
                    found.setdefault(m.group(1), []).append((rel, i + 1))
                continue
            if ln.startswith("#"):
                continue
            for m in ident.finditer(ln):
                name = m.group(1)
                if name not in names:
                    continue
                # before the name: a return type or nothing; after its parameter list: '{'
                before = ln[:m.start()]
                if "=" in before or "(" in before or "return" in before:
                    break
                rest = "\n".join(lines[i:i + 12])[m.end():]
                brace, semi = rest.find("{"), rest.find(";")
                if brace >= 0 and (semi < 0 or brace < semi):
                    found.setdefault(name, []).append((rel, i + 1))
                break
    return found


def choose(name, doc, cands):
    def key(c):
        path = c[0]
        cited = path in doc or os.path.basename(path) in doc
        d = next((n for n, x in enumerate(DIRS) if path.startswith(x + "/")), len(DIRS))
        return (not cited, not path.endswith(".c"), d, path, c[1])
    return min(cands, key=key)


def main(argv):
    src = argv[1] if len(argv) > 1 else os.path.join(REPO, "..", "shared", "linux-6.18.2")
    if not os.path.isdir(os.path.join(src, "mm")):
        src = "/work/shared/linux-6.18.2"
    names = model_names()
    found = definitions(src, set(names))
    index = {n: "%s:%d" % choose(n, names[n], c) for n, c in sorted(found.items())}
    with open(OUT, "w") as f:
        json.dump({"release": "6.18.2", "functions": index}, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{len(index)} of {len(names)} model function names found in {src}: {OUT}")


if __name__ == "__main__":
    main(sys.argv)
