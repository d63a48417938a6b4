#!/usr/bin/env python3
"""Extracts the schemas and list-method parameters the fake serves from
Google's discovery documents, unchanged, into schemas.json.

usage: extract.py <admin.directory_v1.json> <licensing.v1.json> <source note>

The documents used are in `SOURCE` of schemas.json.
"""
import json
import sys

DIRECTORY = ["Users", "Groups", "Members", "Roles", "RoleAssignments", "Customer"]
LICENSING = ["LicenseAssignmentList"]
METHODS = {
    "directory": [("users", "list"), ("groups", "list"), ("members", "list"),
                  ("roles", "list"), ("roleAssignments", "list"), ("customers", "get")],
    "licensing": [("licenseAssignments", "listForProduct")],
}


def closure(doc, roots):
    out, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        schema = doc["schemas"][name]
        out[name] = schema

        def walk(node):
            if isinstance(node, dict):
                if "$ref" in node:
                    todo.append(node["$ref"])
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(schema)
    return out


def methods(doc, wanted):
    out = {}
    for resource, method in wanted:
        m = doc["resources"][resource]["methods"][method]
        out[m["id"]] = {k: m[k] for k in ("path", "httpMethod", "parameters", "response") if k in m}
    return out


def main():
    directory = json.load(open(sys.argv[1]))
    licensing = json.load(open(sys.argv[2]))
    out = {
        "SOURCE": sys.argv[3],
        "directory": {
            "id": directory["id"],
            "revision": directory["revision"],
            "rootUrl": directory["rootUrl"],
            "schemas": closure(directory, DIRECTORY),
            "methods": methods(directory, METHODS["directory"]),
        },
        "licensing": {
            "id": licensing["id"],
            "revision": licensing["revision"],
            "rootUrl": licensing["rootUrl"],
            "schemas": closure(licensing, LICENSING),
            "methods": methods(licensing, METHODS["licensing"]),
        },
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


main()
