#!/usr/bin/env python3
"""Import circles between the modules of Rust crates.

Usage: scripts/use-graph.py [-v] crates/NAME/src [more src dirs...]

Builds, per crate, the graph of its modules (one per file: lib.rs is `crate`, a/mod.rs
and a.rs are `a`) with an edge A -> B when A names B or an item of B: `use crate::…`,
`use super::…`, `use self::…`, a child module's name, or such a path anywhere in code
(comments and strings are left out). `mod b;` alone is no edge (a parent holds its
children), a `pub use b::…` re-export is. Inline modules (`mod tests { … }`) count as
part of their file. Prints each crate's circles (strongly connected components of more
than one module); -v prints the edges. Exit status 1 when a crate has a circle.
"""
import os, re, sys

def strip(src):
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i); i = n if j < 0 else j; continue
        if src.startswith('/*', i):
            d, i = 1, i + 2
            while i < n and d:
                if src.startswith('/*', i): d += 1; i += 2
                elif src.startswith('*/', i): d -= 1; i += 2
                else: i += 1
            continue
        m = re.match(r'r(#*)"', src[i:i+10]) if c == 'r' and (i == 0 or not (src[i-1].isalnum() or src[i-1] == '_')) else None
        if m:
            end = '"' + m.group(1); j = src.find(end, i + len(m.group(0))); i = n if j < 0 else j + len(end); out.append('""'); continue
        if c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == '\\' else 1
            i += 1; out.append('""'); continue
        if c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:i+12])
            if m: i += len(m.group(0)); out.append("' '"); continue
        out.append(c); i += 1
    return ''.join(out)

def expand(tree):
    """Expand a use tree like a::{b, c::{d, e}} into paths (lists of segments)."""
    tree = re.sub(r'\s+as\s+', '@', tree)
    tree = re.sub(r'\s+', '', tree)
    def parse(s, i):
        # returns list of paths, new index
        prefix, paths = [], []
        seg = ''
        while i < len(s):
            ch = s[i]
            if s.startswith('::', i):
                prefix.append(seg); seg = ''; i += 2; continue
            if ch == '{':
                subs, i = parse_list(s, i + 1)
                return [prefix + p for p in subs], i
            if ch in ',}':
                break
            seg += ch; i += 1
        seg = seg.split('@')[0]
        return [prefix + [seg]], i
    def parse_list(s, i):
        res = []
        while i < len(s) and s[i] != '}':
            p, i = parse(s, i)
            res.extend(p)
            if i < len(s) and s[i] == ',': i += 1
        return res, i + 1
    p, _ = parse(tree, 0)
    return p

def modules(src_dir):
    mods = {}
    for root, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith('.rs'): continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src_dir)[:-3].split(os.sep)
            if rel[-1] in ('mod',): rel = rel[:-1]
            if rel == ['lib'] or rel == ['main']: rel = []
            mods[tuple(rel)] = path
    return mods

def resolve(mods, segs):
    # longest prefix that is a module
    for k in range(len(segs), -1, -1):
        if tuple(segs[:k]) in mods: return tuple(segs[:k])
    return None

def edges(mods, include_tests=True):
    E = {}
    for mod, path in mods.items():
        src = strip(open(path).read())
        # inline modules: record spans
        spans = []
        for m in re.finditer(r'\bmod\s+(\w+)\s*\{', src):
            depth, j = 1, m.end()
            while j < len(src) and depth:
                if src[j] == '{': depth += 1
                elif src[j] == '}': depth -= 1
                j += 1
            spans.append((m.start(), j, m.group(1)))
        def inline_at(pos):
            return [s for s in spans if s[0] <= pos < s[1]]
        children = {k[-1] for k in mods if len(k) == len(mod) + 1 and k[:len(mod)] == mod}
        targets = set()
        def base_for(pos):
            inl = inline_at(pos)
            return list(mod) + [s[2] for s in inl], len(inl)
        def add(segs, pos):
            cur, ninl = base_for(pos)
            if not include_tests and ninl: return
            segs = [s for s in segs if s]
            if not segs: return
            if segs[0] == 'crate': full = segs[1:]
            elif segs[0] in ('super', 'self'):
                full = list(cur)
                while segs and segs[0] in ('super', 'self'):
                    if segs[0] == 'super': full = full[:-1]
                    segs = segs[1:]
                full += segs
            elif segs[0] in children and ninl == 0: full = list(mod) + segs
            else: return
            # strip inline module names that are not files
            t = resolve(mods, full)
            if t is not None and t != mod: targets.add(t)
        aliases = {}  # a name bound to a module by `use` (or a child module)
        for m in re.finditer(r'\buse\s+([^;]+);', src):
            for p in expand(m.group(1)):
                add(p, m.start())
                q = [x for x in p if x]
                if q and q[0] in ('crate', 'super', 'self') and not inline_at(m.start()):
                    full = list(mod) if q[0] != 'crate' else []
                    rest = q[1:] if q[0] == 'crate' else q
                    while rest and rest[0] in ('super', 'self'):
                        if rest[0] == 'super': full = full[:-1]
                        rest = rest[1:]
                    full += rest
                    if tuple(full) in mods: aliases[q[-1]] = full
        for c in children: aliases.setdefault(c, list(mod) + [c])
        for m in re.finditer(r'(?<![\w:])(\w+)((?:::\w+)+)', src):
            if m.group(1) in aliases and not re.search(r'\buse\s+[^;]*$', src[max(0, m.start()-200):m.start()]):
                full = aliases[m.group(1)] + m.group(2).split('::')[1:]
                t = resolve(mods, full)
                if t is not None and t != mod: targets.add(t)
        for m in re.finditer(r'(?<![\w:])((?:crate|super|self)(?:::\w+)+)', src):
            add(m.group(1).split('::'), m.start())
        E[mod] = targets
    return E

def sccs(E):
    idx, low, st, on, out, c = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def sc(v):
        idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
        for w in E.get(v, ()):
            if w not in idx: sc(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            out.append(comp)
    for v in E:
        if v not in idx: sc(v)
    return out

def name(m): return 'crate' if not m else '::'.join(m)

if __name__ == '__main__':
    verbose = '-v' in sys.argv
    circles = 0
    for src_dir in [a for a in sys.argv[1:] if a != '-v']:
        mods = modules(src_dir)
        E = edges(mods)
        if verbose:
            for k in sorted(E):
                print(f'  {name(k)} -> {", ".join(sorted(name(t) for t in E[k])) or "-"}')
        cyc = [c for c in sccs(E) if len(c) > 1]
        circles += len(cyc)
        nedges = sum(len(v) for v in E.values())
        print(f'{src_dir}: {len(mods)} modules, {nedges} edges, ' + ('no circle' if not cyc else f'{len(cyc)} circle(s):'))
        for c in cyc:
            print('   ', ' <-> '.join(sorted(name(x) for x in c)))
    sys.exit(1 if circles else 0)
