# A Bridge client with `requests`, driving the hub the way seed 002's
# examples do (raise_for_status, polling until done), plus the error cases
# over HTTP. Prints `PASS <case>` per case and `APP <id>` for the app whose
# records the Rust test then checks; exits non-zero on the first failure.
import os
import sys
import time

import requests

BASE_URL = os.environ["BRIDGE_BASE_URL"]
HEADERS = {
    "Authorization": f"Api-Key {os.environ['BRIDGE_API_KEY']}",
    "Content-Type": "application/json",
}


# Seed 002's pagination helper, as given there.
def push_records_paginated(app_id, sync_id, slug, all_records, page_size=100):
    """Push records in pages of up to 100."""
    for i in range(0, len(all_records), page_size):
        page = all_records[i : i + page_size]
        response = requests.put(
            f"{BASE_URL}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/{slug}/",
            headers=HEADERS,
            json={"records": page},
        )
        response.raise_for_status()
        result = response.json()
        print(f"  Page {i // page_size + 1}: {result}")


# Seed 002's polling loop, as given there (in a function).
def poll(app_id, sync_id):
    while True:
        response = requests.get(
            f"{BASE_URL}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/",
            headers=HEADERS,
        )
        response.raise_for_status()
        status = response.json()
        print(f"Status: {status['status']}")
        if status["status"] in ("completed", "error", "abandoned"):
            break
        time.sleep(5)

    # Print final progress
    for rt in status.get("progress", []):
        print(f"  {rt['name']}: {rt['synced_count']} records")
    return status


def check(case, cond, detail=""):
    if not cond:
        print(f"FAIL {case}: {detail}")
        sys.exit(1)
    print(f"PASS {case}")


def expect(case, response, status):
    body = response.text
    check(
        case,
        response.status_code == status
        and (status < 400 or "detail" in response.json()),
        f"{response.status_code} {body}",
    )
    if status >= 400:
        try:
            response.raise_for_status()
            check(case + " raises", False, "raise_for_status did not raise")
        except requests.HTTPError:
            pass


def url(path):
    return f"{BASE_URL}/api/v1/bridge/{path}"


def accounts(start, stop):
    return [
        {
            "id": f"p{i}",
            "email": f"p{i}@acme.test",
            "memberships": {"squad": [{"id": f"s{i % 7}"}]},
        }
        for i in range(start, stop)
    ]


def main():
    response = requests.post(url("apps/"), headers=HEADERS, json={"name": "Paged"})
    response.raise_for_status()
    app_id = response.json()["id"]
    print(f"APP {app_id}")
    for rt in [
        {"slug": "squad", "name": "Squad", "type": "group"},
        {"slug": "account", "name": "Account", "type": "account"},
    ]:
        requests.post(
            url(f"apps/{app_id}/resource-types/"), headers=HEADERS, json=rt
        ).raise_for_status()

    # Session 1: 250 accounts in three pages.
    response = requests.post(url(f"apps/{app_id}/sync/"), headers=HEADERS)
    response.raise_for_status()
    sync_id = response.json()["sync_id"]
    push_records_paginated(app_id, sync_id, "account", accounts(0, 250))
    response = requests.post(
        url(f"apps/{app_id}/sync/{sync_id}/complete/"), headers=HEADERS
    )
    response.raise_for_status()
    check("complete 202 empty", response.status_code == 202 and response.text == "")
    status = poll(app_id, sync_id)
    counts = {rt["slug"]: rt["synced_count"] for rt in status["progress"]}
    check("paginated push", counts.get("account") == 250, str(status))
    check("poll until done", status["status"] == "completed", str(status))

    # Session 2: 230 of them; 20 are removed at completion.
    sync_id = requests.post(url(f"apps/{app_id}/sync/"), headers=HEADERS).json()[
        "sync_id"
    ]
    push_records_paginated(app_id, sync_id, "account", accounts(0, 230))
    requests.post(
        url(f"apps/{app_id}/sync/{sync_id}/complete/"), headers=HEADERS
    ).raise_for_status()
    status = poll(app_id, sync_id)
    check("stale records removed", status["status"] == "completed", str(status))

    # Error cases.
    sid = requests.post(url(f"apps/{app_id}/sync/"), headers=HEADERS).json()["sync_id"]
    page = url(f"apps/{app_id}/sync/{sid}/account/")

    def put(records):
        return requests.put(page, headers=HEADERS, json={"records": records})

    expect("missing id 400", put([{"email": "x@acme.test"}]), 400)
    expect("no email or username 400", put([{"id": "x"}]), 400)
    expect("wrong type 400", put([{"id": "x", "email": 7}]), 400)
    expect("too many records 400", put(accounts(0, 101)), 400)
    expect(
        "invalid json 400",
        requests.put(page, headers=HEADERS, data="{not json"),
        400,
    )
    expect(
        "unknown membership type 422",
        put([{"id": "x", "email": "x@a", "memberships": {"guild": [{"id": "g"}]}}]),
        422,
    )
    expect(
        "unknown type 404",
        requests.put(
            url(f"apps/{app_id}/sync/{sid}/nope/"),
            headers=HEADERS,
            json={"records": []},
        ),
        404,
    )
    nil = "00000000-0000-4000-8000-000000000000"
    expect(
        "unknown session 404",
        requests.put(
            url(f"apps/{app_id}/sync/{nil}/account/"),
            headers=HEADERS,
            json={"records": []},
        ),
        404,
    )
    expect("unknown app 404", requests.get(url(f"apps/{nil}/"), headers=HEADERS), 404)
    expect(
        "duplicate slug 409",
        requests.post(
            url(f"apps/{app_id}/resource-types/"),
            headers=HEADERS,
            json={"slug": "squad", "name": "Squad", "type": "group"},
        ),
        409,
    )
    requests.post(
        url(f"apps/{app_id}/sync/{sid}/abandon/"), headers=HEADERS
    ).raise_for_status()
    expect("push after abandon 400", put(accounts(0, 1)), 400)
    done = sync_id
    expect(
        "push after complete 400",
        requests.put(
            url(f"apps/{app_id}/sync/{done}/account/"),
            headers=HEADERS,
            json={"records": accounts(0, 1)},
        ),
        400,
    )
    expect("no key 401", requests.get(url("apps/")), 401)
    other = BASE_URL.rsplit("/", 1)[0] + "/someone-else"
    expect(
        "other tenant 404",
        requests.get(f"{other}/api/v1/bridge/apps/", headers=HEADERS),
        404,
    )


if __name__ == "__main__":
    main()
