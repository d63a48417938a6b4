//! The Slack fake as one of the sandbox kit's fakes: mounted at `/slack`,
//! found through the kit's registry by the demo, the benchmark and the
//! end-to-end harness. Organisations of the kit's generic directory become
//! workspaces (users and user groups); the rest of the fake's behaviour
//! (tiers, rotation, error bodies) is its own, see `mod.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tether_sandbox::{ConnectionHint, DemoSetup, DirectorySpec, Fake, FakeDescriptor, KitContext};

use super::{ClientSpec, FakeSlack, TokenSpec, WorkspaceSpec};

tether_sandbox::inventory::submit! {
    FakeDescriptor {
        slug: "slack",
        display_name: "Slack",
        connector: "slack",
        build: SlackKitFake::build,
    }
}

struct SlackKitFake {
    fake: FakeSlack,
    /// Kit organisation name → workspace id.
    workspaces: Mutex<BTreeMap<String, String>>,
}

impl SlackKitFake {
    fn build(ctx: KitContext) -> Arc<dyn Fake> {
        Arc::new(SlackKitFake {
            fake: FakeSlack::new(ctx.base_url).with_kit(ctx.kit),
            workspaces: Mutex::new(BTreeMap::new()),
        })
    }

    fn team_id(&self, org: &str) -> Result<String, String> {
        self.workspaces
            .lock()
            .expect("workspaces lock")
            .get(org)
            .cloned()
            .ok_or_else(|| format!("the Slack fake has no workspace `{org}`; create it first"))
    }
}

impl Fake for SlackKitFake {
    fn router(&self) -> axum::Router {
        super::router(self.fake.clone())
    }

    fn create_directory(
        &self,
        org: &str,
        spec: &DirectorySpec,
    ) -> Result<serde_json::Value, String> {
        let users = u32::try_from(spec.users).map_err(|_| "too many users for Slack's fake")?;
        let groups = spec.groups.unwrap_or_else(|| (spec.users / 200).max(1));
        let ws = WorkspaceSpec {
            name: org.to_owned(),
            domain: org.to_owned(),
            users,
            groups: u32::try_from(groups).map_err(|_| "too many user groups")?,
            seed: spec.seed.unwrap_or(1),
            enterprise_id: None,
            names: spec.names,
        };
        let id = self.fake.create_workspace(ws);
        self.workspaces
            .lock()
            .expect("workspaces lock")
            .insert(org.to_owned(), id.clone());
        Ok(json!({ "team_id": id, "users": users, "usergroups": groups }))
    }

    fn credential(&self, org: &str) -> Result<serde_json::Value, String> {
        let token = self.fake.issue_token(TokenSpec::bot(&self.team_id(org)?));
        Ok(json!({ "access_token": token, "token_type": "bot" }))
    }

    fn connection(&self, _org: &str) -> ConnectionHint {
        let mut settings = serde_json::Map::new();
        settings.insert("api_base_url".into(), self.fake.api_url().into());
        settings.insert("scim_base_url".into(), self.fake.scim_url().into());
        ConnectionHint {
            app: "slack",
            settings,
        }
    }

    fn demo(&self, _callback: &str) -> Result<DemoSetup, String> {
        for (org, users) in [("acme", 800), ("acme-labs", 150)] {
            self.create_directory(org, &DirectorySpec::new(users))?;
        }
        let client_id = "tether-demo-slack";
        let client_secret = "tether-demo-slack-client-secret";
        self.fake.register_client(ClientSpec {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            rotation: true,
        });
        let base = self.fake.base_url();
        let mut setting_defaults = serde_json::Map::new();
        setting_defaults.insert("api_base_url".into(), self.fake.api_url().into());
        setting_defaults.insert("scim_base_url".into(), self.fake.scim_url().into());
        Ok(DemoSetup {
            app: "slack",
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authorize_url: format!("{base}/oauth/v2/authorize"),
            token_url: format!("{base}/api/oauth.v2.access"),
            setting_defaults,
        })
    }

    /// The fake's counters, with each method's tier (requests a minute at
    /// Slack's own rates), so a benchmark can tell what the requests need.
    fn stats(&self) -> serde_json::Value {
        let stats = self.fake.stats();
        let tiers: serde_json::Map<String, serde_json::Value> = stats
            .requests
            .keys()
            .filter_map(|m| Some((m.clone(), super::tier_per_minute(m)?.into())))
            .collect();
        let mut v = serde_json::to_value(stats).unwrap_or_default();
        v["tier_per_minute"] = tiers.into();
        v
    }

    fn reset_stats(&self) {
        self.fake.reset_stats()
    }

    fn lift_rate_limits(&self) {
        self.fake.set_rate_scale(None)
    }

    fn summary_html(&self) -> String {
        let workspaces = self.workspaces.lock().expect("workspaces lock");
        let mut html = String::from("<ul>");
        for (org, id) in workspaces.iter() {
            html.push_str(&format!(
                "<li>{} ({})</li>",
                tether_sandbox::util::html_escape(org),
                tether_sandbox::util::html_escape(id)
            ));
        }
        html.push_str("</ul>");
        html
    }
}
