//! Hand-written JSON rendering of GitHub objects straight into a `String`.
//!
//! Logins, slugs and URLs produced here only contain `[A-Za-z0-9-_:/.?=]`, so
//! no JSON escaping is needed; free text goes through `serde_json`.

use std::fmt::Write;

use base64::Engine;

use super::model::{InvitationRef, Org};
use super::rfc3339;

/// Timestamps of generated objects start here (2020-01-01T00:00:00Z).
pub(crate) const EPOCH_2020: i64 = 1_577_836_800;

/// Legacy global node id: base64("04:User123"), as GitHub's v3 `node_id`s are
/// (https://docs.github.com/en/graphql/guides/using-global-node-ids).
pub(crate) fn node_id(out: &mut String, kind: &str, id: u64) {
    let raw = format!("{:02}:{kind}{id}", kind.len());
    base64::engine::general_purpose::STANDARD.encode_string(raw, out);
}

fn str_json(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// The "simple-user" object
/// (https://docs.github.com/en/rest/orgs/members#list-organization-members).
pub(crate) fn simple_user(out: &mut String, base: &str, login: &str, id: u64) {
    let u = format!("{base}/users/{login}");
    let _ = write!(out, "{{\"login\":\"{login}\",\"id\":{id},\"node_id\":\"");
    node_id(out, "User", id);
    let _ = write!(
        out,
        "\",\"avatar_url\":\"https://avatars.githubusercontent.com/u/{id}?v=4\",\"gravatar_id\":\"\",\
\"url\":\"{u}\",\"html_url\":\"{base}/{login}\",\"followers_url\":\"{u}/followers\",\
\"following_url\":\"{u}/following{{/other_user}}\",\"gists_url\":\"{u}/gists{{/gist_id}}\",\
\"starred_url\":\"{u}/starred{{/owner}}{{/repo}}\",\"subscriptions_url\":\"{u}/subscriptions\",\
\"organizations_url\":\"{u}/orgs\",\"repos_url\":\"{u}/repos\",\"events_url\":\"{u}/events{{/privacy}}\",\
\"received_events_url\":\"{u}/received_events\",\"type\":\"User\",\"user_view_type\":\"public\",\"site_admin\":false}}"
    );
}

pub(crate) fn member(out: &mut String, base: &str, org: &Org, user: u32) {
    simple_user(out, base, &org.user_login(user), org.user_id(user));
}

/// The authenticated user (`GET /user`,
/// https://docs.github.com/en/rest/users/users#get-the-authenticated-user).
pub(crate) fn full_user(base: &str, login: &str, id: u64) -> String {
    let mut s = String::with_capacity(1500);
    simple_user(&mut s, base, login, id);
    s.pop();
    let _ = write!(
        s,
        ",\"name\":\"{login}\",\"company\":null,\"blog\":\"\",\"location\":null,\"email\":null,\
\"hireable\":null,\"bio\":null,\"twitter_username\":null,\"notification_email\":null,\
\"public_repos\":0,\"public_gists\":0,\"followers\":0,\"following\":0,\
\"created_at\":\"{}\",\"updated_at\":\"{}\"}}",
        rfc3339(EPOCH_2020 + (id % 86_400) as i64),
        rfc3339(EPOCH_2020 + 86_400 * 365)
    );
    s
}

/// "organization-simple" fields (without the closing brace).
fn org_simple_fields(out: &mut String, base: &str, org: &Org) {
    let l = &org.login;
    let u = format!("{base}/orgs/{l}");
    let _ = write!(
        out,
        "{{\"login\":\"{l}\",\"id\":{},\"node_id\":\"",
        org.id()
    );
    node_id(out, "Organization", org.id());
    let _ = write!(
        out,
        "\",\"url\":\"{u}\",\"repos_url\":\"{u}/repos\",\"events_url\":\"{u}/events\",\
\"hooks_url\":\"{u}/hooks\",\"issues_url\":\"{u}/issues\",\"members_url\":\"{u}/members{{/member}}\",\
\"public_members_url\":\"{u}/public_members{{/member}}\",\
\"avatar_url\":\"https://avatars.githubusercontent.com/u/{}?v=4\",\"description\":",
        org.id()
    );
    str_json(out, &format!("Sandbox organisation {}", org.name));
}

pub(crate) fn org_simple(out: &mut String, base: &str, org: &Org) {
    org_simple_fields(out, base, org);
    out.push('}');
}

/// `GET /orgs/{org}` (https://docs.github.com/en/rest/orgs/orgs#get-an-organization);
/// `plan` is only present for owners, and the sandbox's tokens always belong to one.
/// `company`, `location` and `email` are null, as GitHub answers for an
/// organisation that set none (github/rest-api-description#7058; the
/// description types them as strings, see `SANDBOX.md`); `blog` is a URL, as
/// the description's `format: uri` wants.
pub(crate) fn org_full(base: &str, org: &Org) -> String {
    let mut s = String::with_capacity(2500);
    org_simple_fields(&mut s, base, org);
    s.push_str(",\"name\":");
    str_json(&mut s, &org.name);
    let filled = org.members().len() as u64 + org.outside + org.pending_invitation_count();
    let _ = write!(
        s,
        ",\"company\":null,\"blog\":\"https://{l}.example.com\",\"location\":null,\"email\":null,\"twitter_username\":null,\
\"is_verified\":false,\"has_organization_projects\":true,\"has_repository_projects\":true,\
\"public_repos\":0,\"public_gists\":0,\"followers\":0,\"following\":0,\"html_url\":\"{base}/{l}\",\
\"created_at\":\"{c}\",\"updated_at\":\"{c}\",\"archived_at\":null,\"type\":\"Organization\",\
\"total_private_repos\":0,\"owned_private_repos\":0,\"private_gists\":0,\"disk_usage\":0,\
\"collaborators\":{oc},\"billing_email\":\"billing@{l}.example.com\",\
\"plan\":{{\"name\":\"business\",\"space\":976562499,\"private_repos\":999999,\"filled_seats\":{filled},\"seats\":{seats}}},\
\"default_repository_permission\":\"read\",\"members_can_create_repositories\":true,\
\"two_factor_requirement_enabled\":false,\"members_allowed_repository_creation_type\":\"all\",\
\"members_can_create_public_repositories\":true,\"members_can_create_private_repositories\":true,\
\"members_can_create_internal_repositories\":false,\"members_can_create_pages\":true,\
\"members_can_fork_private_repositories\":false,\"web_commit_signoff_required\":false}}",
        l = org.login,
        c = rfc3339(EPOCH_2020),
        oc = org.outside,
        seats = filled + 10,
    );
    s
}

/// The "team-simple" object used for `parent`
/// (https://docs.github.com/en/rest/teams/teams#list-teams). GitHub's OpenAPI
/// description (`@octokit/openapi`, `api.github.com.json`) requires `type`
/// ("organization" for an organisation's own team, "enterprise" for an
/// enterprise team) in both the team and its `parent`, and lists
/// `organization_id`.
fn team_fields(out: &mut String, base: &str, org: &Org, num: u32) {
    let id = org.team_id(num);
    let slug = Org::team_slug(num);
    let _ = write!(out, "{{\"id\":{id},\"node_id\":\"");
    node_id(out, "Team", id);
    let _ = write!(
        out,
        "\",\"url\":\"{base}/organizations/{oid}/team/{id}\",\"html_url\":\"{base}/orgs/{l}/teams/{slug}\",\
\"name\":{name},\"slug\":\"{slug}\",\"description\":\"Sandbox team {num}\",\"privacy\":\"closed\",\
\"notification_setting\":\"notifications_enabled\",\"permission\":\"pull\",\
\"members_url\":\"{base}/organizations/{oid}/team/{id}/members{{/member}}\",\
\"repositories_url\":\"{base}/organizations/{oid}/team/{id}/repos\",\
\"type\":\"organization\",\"organization_id\":{oid}",
        oid = org.id(),
        l = org.login,
        name = serde_json::to_string(&org.team_name(num)).unwrap_or_else(|_| "\"\"".into()),
    );
}

pub(crate) fn team(out: &mut String, base: &str, org: &Org, num: u32) {
    team_fields(out, base, org, num);
    out.push_str(",\"parent\":");
    match org.parent(num) {
        Some(p) => {
            team_fields(out, base, org, p);
            out.push('}');
        }
        None => out.push_str("null"),
    }
    out.push('}');
}

/// Organization invitation
/// (https://docs.github.com/en/rest/orgs/members#list-pending-organization-invitations).
/// Odd-numbered generated invitations are email-only (`login: null`).
pub(crate) fn invitation(out: &mut String, base: &str, org: &Org, inv: InvitationRef) {
    let (id, login, email, role, created, teams) = match inv {
        InvitationRef::Generated(k) => {
            let (login, email) = if k % 2 == 1 {
                (
                    None,
                    Some(format!("invitee-{k:06}@{}.example.com", org.login)),
                )
            } else {
                (Some(format!("invitee-{k:06}")), None)
            };
            let role = if k % 10 == 9 {
                "admin"
            } else {
                "direct_member"
            };
            (
                org.invitation_id(k),
                login,
                email,
                role.to_string(),
                EPOCH_2020 + 86_400 * 400 + k as i64 * 60,
                0,
            )
        }
        InvitationRef::Api(i) => {
            let a = &org.overlay.invitations[i];
            (
                a.id,
                a.user.map(|u| org.user_login(u)),
                a.email.clone(),
                a.role.clone(),
                a.created_at,
                a.team_ids.len(),
            )
        }
    };
    let _ = write!(out, "{{\"id\":{id},\"login\":");
    match &login {
        Some(l) => str_json(out, l),
        None => out.push_str("null"),
    }
    out.push_str(",\"email\":");
    match &email {
        Some(e) => str_json(out, e),
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"role\":\"{role}\",\"created_at\":\"{}\",\"failed_at\":null,\"failed_reason\":null,\"inviter\":",
        rfc3339(created)
    );
    match org.members().first() {
        Some(&u) => member(out, base, org, u),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"team_count\":{teams},\"node_id\":\"",);
    node_id(out, "OrganizationInvitation", id);
    let _ = write!(
        out,
        "\",\"invitation_teams_url\":\"{base}/organizations/{}/invitations/{id}/teams\",\"invitation_source\":\"member\"}}",
        org.id()
    );
}

/// Copilot seat
/// (https://docs.github.com/en/rest/copilot/copilot-user-management#list-all-copilot-seat-assignments-for-an-organization).
pub(crate) fn copilot_seat(out: &mut String, base: &str, org: &Org, user: u32) {
    let t = EPOCH_2020 + 86_400 * 500 + user as i64 * 17;
    let _ = write!(
        out,
        "{{\"created_at\":\"{}\",\"updated_at\":\"{}\",\"pending_cancellation_date\":null,\
\"last_activity_at\":\"{}\",\"last_activity_editor\":\"vscode/1.77.3/copilot/1.86.82\",\
\"last_authenticated_at\":\"{}\",\"plan_type\":\"business\",\"assignee\":",
        rfc3339(t),
        rfc3339(t + 3600),
        rfc3339(t + 86_400 * 30),
        rfc3339(t + 86_400 * 30 - 60),
    );
    member(out, base, org, user);
    out.push_str(",\"assigning_team\":null}");
}
