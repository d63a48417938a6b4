//! Workspace users through the real binary over HTTP: an owner invites a
//! viewer, the viewer sets a password from the one-time link and signs in,
//! a viewer's POST is refused 403 until an owner promotes it, a deactivated
//! user's open session is refused at once, and the audit log names the
//! user who did each thing. Also the CLI: `tether users create` and
//! `reset-password` print one-time links that work.

mod common;

use common::{accept, field, Hub};
use reqwest::{Client, StatusCode};
use serde_json::Value;

fn browser() -> Client {
    Client::builder().cookie_store(true).build().unwrap()
}

/// Signs `browser` in with the sign-in form.
async fn sign_in(base: &str, browser: &Client, login: &str, password: &str) -> reqwest::Response {
    let page = browser
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    browser
        .post(format!("{base}/login"))
        .form(&[
            (
                "login_csrf",
                field(&page, "login_csrf")
                    .expect("a login CSRF field")
                    .as_str(),
            ),
            ("login", login),
            ("password", password),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap()
}

/// The session's CSRF token, read from a page it can see.
async fn csrf(base: &str, browser: &Client) -> String {
    let page = browser
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    field(&page, "csrf").expect("a signed-in page has the CSRF token")
}

/// The audit log through `tether audit --json` (one entry a line).
fn audit(hub: &Hub) -> Vec<Value> {
    let out = hub.ok(&["audit", "--json", "--limit", "500"], &[]);
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn invite_accept_roles_and_deactivation() {
    let hub = Hub::new();
    let server = hub.serve("");
    let base = server.url.clone();

    // The configured admin password is the owner `admin`.
    let owner = browser();
    let res = sign_in(&base, &owner, "admin", "admin-password").await;
    assert_eq!(res.url().path(), "/", "the owner signs in");
    let owner_csrf = csrf(&base, &owner).await;

    // The owner invites a viewer; the link is shown once.
    let res = owner
        .post(format!("{base}/users/invite"))
        .form(&[
            ("csrf", owner_csrf.as_str()),
            ("email", "vera@example.com"),
            ("role", "viewer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let marker = "id=\"invitation-link\">";
    let start = page.find(marker).expect("the link is shown") + marker.len();
    let link = page[start..page[start..].find('<').unwrap() + start].to_owned();
    assert!(link.starts_with(&format!("{base}/invite/")), "{link}");
    let users = owner
        .get(format!("{base}/users"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!users.contains(&link), "the link is not shown again");
    assert!(users.contains("vera@example.com") && users.contains("invited, until"));

    // Before accepting, the viewer cannot sign in.
    let viewer = browser();
    let res = sign_in(&base, &viewer, "vera@example.com", "vera's password").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The link sets the password once and signs in.
    let res = accept(&viewer, &link, "vera's password").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/");
    let again = browser().get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "the link works once");

    // Signing in by email from another browser works, as a viewer.
    let viewer = browser();
    let res = sign_in(&base, &viewer, "VERA@example.com", "vera's password").await;
    assert_eq!(res.url().path(), "/");
    let viewer_csrf = csrf(&base, &viewer).await;
    // Reading is allowed; users are the owner's.
    assert_eq!(
        viewer
            .get(format!("{base}/audit"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let res = viewer.get(format!("{base}/users")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A viewer's POST is refused with a page that says why.
    let change = [
        ("csrf", viewer_csrf.as_str()),
        ("current", "vera's password"),
        ("new", "vera's new password"),
        ("confirm", "vera's new password"),
    ];
    let res = viewer
        .post(format!("{base}/settings/password"))
        .form(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("forbidden_role") && body.contains("viewer"),
        "{body}"
    );
    // Signing out is the one POST a viewer may make (tested last).

    // The owner promotes the viewer to admin; the same session may now post.
    let id = hub
        .ok(&["users", "list", "--json"], &[])
        .parse::<Value>()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "vera@example.com")
        .expect("vera is listed")["id"]
        .as_i64()
        .unwrap();
    let res = owner
        .post(format!("{base}/users/{id}/role"))
        .form(&[("csrf", owner_csrf.as_str()), ("role", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/users");
    let res = viewer
        .post(format!("{base}/settings/password"))
        .form(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "an admin may change things");
    assert_eq!(res.url().query(), Some("saved=password"));
    // An admin still may not manage users.
    let res = viewer.get(format!("{base}/users")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The last owner cannot demote itself.
    let me = hub
        .ok(&["users", "list", "--json"], &[])
        .parse::<Value>()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_name"] == "admin")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let res = owner
        .post(format!("{base}/users/{me}/role"))
        .form(&[("csrf", owner_csrf.as_str()), ("role", "viewer")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("without an active owner"));

    // Deactivating ends the open session at once.
    assert_eq!(
        viewer
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .url()
            .path(),
        "/"
    );
    let res = owner
        .post(format!("{base}/users/{id}/active"))
        .form(&[("csrf", owner_csrf.as_str()), ("active", "no")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = viewer.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(
        res.url().path(),
        "/login",
        "the deactivated user's session is gone"
    );
    let res = sign_in(&base, &browser(), "vera@example.com", "vera's new password").await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "and it cannot sign in again"
    );

    // The audit log names who did each thing.
    let entries = audit(&hub);
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {entries:?}"))
            .clone()
    };
    let invited = find("user.invited");
    assert_eq!(invited["actor_kind"], "user");
    assert_eq!(invited["actor"], format!("user:{me} (admin)"));
    assert_eq!(invited["target"], format!("user:{id} (vera@example.com)"));
    let accepted = find("user.invitation_accepted");
    assert_eq!(accepted["actor"], format!("user:{id} (vera@example.com)"));
    let promoted = find("user.role_changed");
    assert_eq!(promoted["actor_id"], format!("user:{me}"));
    assert_eq!(promoted["details"]["to"], "admin");
    let changed = entries
        .iter()
        .find(|e| e["action"] == "user.password_reset" && e["actor_id"] == format!("user:{id}"))
        .expect("vera's password change names vera");
    assert_eq!(changed["actor_kind"], "user");
    assert_eq!(find("user.deactivated")["actor_id"], format!("user:{me}"));
    assert!(
        entries.iter().all(|e| e["actor_kind"] != "web"),
        "no entry says only `web`: {entries:?}"
    );

    // The CLI: an invitation link for a new owner, and a reset link that
    // reactivates and lets vera back in.
    // The CLI names the hub by its configured public URL (none here: the
    // default); the path is what matters.
    let on_server = |out: &str| {
        let link = out.trim();
        let path = &link[link.find("/invite/").expect("a link was printed")..];
        format!("{base}{path}")
    };
    let out = hub.ok(
        &["users", "create", "olga@example.com", "--role", "owner"],
        &[],
    );
    let link = on_server(&out);
    let olga = browser();
    let res = accept(&olga, &link, "olga's password").await;
    assert_eq!(res.url().path(), "/");
    assert_eq!(
        olga.get(format!("{base}/users"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let out = hub.ok(&["users", "reset-password", "vera@example.com"], &[]);
    let vera = browser();
    let res = accept(&vera, &on_server(&out), "vera's third password").await;
    assert_eq!(res.url().path(), "/");
    let listed = hub.ok(&["users", "list"], &[]);
    assert!(
        listed.contains("olga@example.com") && listed.contains("owner"),
        "{listed}"
    );

    // Signing out is allowed to anyone.
    let csrf = csrf(&base, &vera).await;
    let res = vera
        .post(format!("{base}/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.url().path(), "/login");
    drop(server);
}
