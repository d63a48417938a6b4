#!/usr/bin/env python3
"""Extracts the Microsoft Graph v1.0 types the Entra ID fake serves from
Graph's official CSDL into `schema.json` beside this script, which
`tests/graph_schema.rs` checks the fake's answers against.

Source: https://github.com/microsoftgraph/msgraph-metadata, file
`schemas/v1.0-Prod.csdl` at commit f54f11b60956ea7b185ca0447b2b80805836ec7b
(the CSDL that Graph's OpenAPI descriptions are generated from; 3.4 MB,
not committed).

    git -C msgraph-metadata show \\
        f54f11b60956ea7b185ca0447b2b80805836ec7b:schemas/v1.0-Prod.csdl > v1.0-Prod.csdl
    python3 extract.py v1.0-Prod.csdl

For each root type and every complex or enum type its structural
properties reach, it writes the type's kind, its BaseType chain, and every
property (inherited ones included) with its type (namespace stripped: `Edm.*`
or a Graph type name), whether it is a collection and whether it is
nullable; navigation properties the same way under `navigation`. Only the
standard library is used.
"""

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SOURCE = {
    "repository": "https://github.com/microsoftgraph/msgraph-metadata",
    "path": "schemas/v1.0-Prod.csdl",
    "commit": "f54f11b60956ea7b185ca0447b2b80805836ec7b",
}
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NAMESPACE = "microsoft.graph"
ALIAS = "graph"

# What the fake answers with (src/fake/wire.rs), as Graph names them.
ROOTS = [
    "directoryObject",
    "user",
    "group",
    "servicePrincipal",
    "organization",
    "subscribedSku",
    "unifiedRoleDefinition",
    "unifiedRoleAssignment",
]


def local(ref):
    """`graph.x` / `microsoft.graph.x` -> `x`; `Edm.*` unchanged."""
    for p in (NAMESPACE + ".", ALIAS + "."):
        if ref.startswith(p):
            return ref[len(p):]
    return ref


def split(t):
    if t.startswith("Collection(") and t.endswith(")"):
        return local(t[len("Collection("):-1]), True
    return local(t), False


def dump(v, depth=0):
    """JSON with one line per property (small, and diffs stay readable)."""
    if isinstance(v, dict) and v and depth < 4:
        pad = " " * (depth + 1)
        items = [f"{pad}{json.dumps(k)}: {dump(x, depth + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    return json.dumps(v)


def main():
    csdl = Path(sys.argv[1] if len(sys.argv) > 1 else "v1.0-Prod.csdl")
    root = ET.parse(csdl).getroot()
    schema = next(
        s for s in root.iter(EDM + "Schema") if s.get("Namespace") == NAMESPACE
    )
    decl = {}
    for el in schema:
        tag = el.tag[len(EDM):]
        if tag in ("EntityType", "ComplexType", "EnumType"):
            decl[el.get("Name")] = (tag, el)

    def chain(name):
        out = []
        while name:
            out.append(name)
            base = decl[name][1].get("BaseType")
            name = local(base) if base else None
        return out

    types, enums, todo = {}, {}, list(ROOTS)
    while todo:
        name = todo.pop()
        if name in types or name in enums:
            continue
        kind, el = decl[name]
        if kind == "EnumType":
            enums[name] = [m.get("Name") for m in el.iter(EDM + "Member")]
            continue
        props, nav = {}, {}
        # Base types first, so a derived declaration would win.
        for t in reversed(chain(name)):
            for p in decl[t][1]:
                tag = p.tag[len(EDM):]
                if tag not in ("Property", "NavigationProperty"):
                    continue
                typ, coll = split(p.get("Type"))
                entry = {
                    "type": typ,
                    "collection": coll,
                    "nullable": p.get("Nullable", "true") != "false",
                }
                if tag == "Property":
                    props[p.get("Name")] = entry
                    if not typ.startswith("Edm."):
                        todo.append(typ)
                else:
                    del entry["nullable"]
                    nav[p.get("Name")] = entry
        types[name] = {
            "kind": kind,
            "base": chain(name)[1:],
            "properties": dict(sorted(props.items())),
            "navigation": dict(sorted(nav.items())),
        }
    out = {
        "source": SOURCE,
        "roots": ROOTS,
        "types": dict(sorted(types.items())),
        "enums": dict(sorted(enums.items())),
    }
    dest = Path(__file__).with_name("schema.json")
    dest.write_text(dump(out) + "\n")
    print(f"{dest}: {len(types)} types, {len(enums)} enums")


if __name__ == "__main__":
    main()
