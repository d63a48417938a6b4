# Seed 002's "Complete Example" (Iden's Bridge Getting Started guide), token
# for token, with its indentation restored (the stored page lost it).
# tests/bridge.rs runs it with only BASE_URL and the key replaced.
import time
import requests

BASE_URL = "https://developer.idenhq.com/org/acme"
HEADERS = {
    "Authorization": "Api-Key <your-api-key>",
    "Content-Type": "application/json",
}


def main():
    # 1. Create the Bridge app
    app = requests.post(
        f"{BASE_URL}/api/v1/bridge/apps/",
        headers=HEADERS,
        json={"name": "Acme HR"},
    ).json()
    app_id = app["id"]
    print(f"Created app: {app_id}")

    # 2. Register resource types
    for rt in [
        {"slug": "team", "name": "Team", "type": "group"},
        {"slug": "account", "name": "Account", "type": "account"},
    ]:
        resp = requests.post(
            f"{BASE_URL}/api/v1/bridge/apps/{app_id}/resource-types/",
            headers=HEADERS,
            json=rt,
        )
        resp.raise_for_status()
        print(f"Registered: {rt['slug']}")

    # 3. Start sync session
    sync_id = requests.post(
        f"{BASE_URL}/api/v1/bridge/apps/{app_id}/sync/",
        headers=HEADERS,
    ).json()["sync_id"]
    print(f"Sync session: {sync_id}")

    # 4. Push groups (recommended before accounts)
    resp = requests.put(
        f"{BASE_URL}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/team/",
        headers=HEADERS,
        json={
            "records": [
                {"id": "g1", "name": "Engineering"},
                {"id": "g2", "name": "Design"},
            ]
        },
    )
    resp.raise_for_status()
    print(f"Groups: {resp.json()}")

    # 5. Push accounts with memberships
    resp = requests.put(
        f"{BASE_URL}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/account/",
        headers=HEADERS,
        json={
            "records": [
                {
                    "id": "u1",
                    "email": "alice@acme.com",
                    "first_name": "Alice",
                    "last_name": "Smith",
                    "memberships": {"team": [{"id": "g1"}, {"id": "g2"}]},
                },
                {
                    "id": "u2",
                    "email": "bob@acme.com",
                    "first_name": "Bob",
                    "last_name": "Jones",
                    "memberships": {"team": [{"id": "g1"}]},
                },
            ]
        },
    )
    resp.raise_for_status()
    print(f"Accounts: {resp.json()}")

    # 6. Complete the sync
    requests.post(
        f"{BASE_URL}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/complete/",
        headers=HEADERS,
    ).raise_for_status()
    print("Sync completing...")

    # 7. Poll until done
    while True:
        status = requests.get(
            f"{BASE_URL}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/",
            headers=HEADERS,
        ).json()
        print(f" Status: {status['status']}")
        if status["status"] in ("completed", "error", "abandoned"):
            break
        time.sleep(5)

    print("Done!")
    for rt in status.get("progress", []):
        print(f" {rt['name']}: {rt['synced_count']} records")


if __name__ == "__main__":
    main()
