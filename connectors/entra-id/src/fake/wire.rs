//! Graph's JSON as the fake writes it: typed structs on the listing path
//! (a 100k-user tenant is serialised page after page in the benchmark),
//! each property written only when `$select`ed. `Option<Option<T>>`: the
//! outer `None` is "not selected", `Some(None)` is a selected property
//! without a value (Graph writes `null`).

use serde::Serialize;

#[derive(Serialize)]
pub struct Collection<T> {
    #[serde(rename = "@odata.context")]
    pub context: String,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", skip_serializing_if = "Option::is_none")]
    pub delta_link: Option<String>,
    pub value: Vec<T>,
}

/// `{"reason": "changed" | "deleted"}`
/// (<https://learn.microsoft.com/en-us/graph/delta-query-overview#resource-representation-in-the-delta-query-response>).
#[derive(Serialize, Clone, Copy)]
pub struct Removed {
    pub reason: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicense {
    pub disabled_plans: Vec<String>,
    pub sku_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseAssignmentState {
    pub assigned_by_group: Option<String>,
    pub disabled_plans: Vec<String>,
    pub error: &'static str,
    pub last_updated_date_time: String,
    pub sku_id: String,
    pub state: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInActivity {
    pub last_sign_in_date_time: Option<String>,
    pub last_sign_in_request_id: Option<String>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_mails: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surname: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_licenses: Option<Vec<AssignedLicense>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_assignment_states: Option<Vec<LicenseAssignmentState>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_activity: Option<Option<SignInActivity>>,
}

/// A directory object in a members list or `members@delta`.
#[derive(Serialize)]
pub struct Member {
    #[serde(rename = "@odata.type")]
    pub odata_type: &'static str,
    pub id: String,
    #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_types: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_assignable_to_role: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_licenses: Option<Vec<AssignedLicense>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,
    #[serde(rename = "members@delta", skip_serializing_if = "Option::is_none")]
    pub members_delta: Option<Vec<Member>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_principal_type: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_built_in: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_scopes: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_permissions: Option<Vec<RolePermission>>,
}

/// `unifiedRolePermission`
/// (<https://learn.microsoft.com/en-us/graph/api/resources/unifiedrolepermission>).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolePermission {
    pub allowed_resource_actions: Vec<&'static str>,
    pub condition: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_definition_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_scope_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Member>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseUnitsDetail {
    pub enabled: i64,
    pub locked_out: i64,
    pub suspended: i64,
    pub warning: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlanInfo {
    pub applies_to: &'static str,
    pub provisioning_status: &'static str,
    pub service_plan_id: String,
    pub service_plan_name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSku {
    pub account_id: String,
    pub account_name: String,
    pub applies_to: &'static str,
    pub capability_status: &'static str,
    pub consumed_units: i64,
    pub id: String,
    pub prepaid_units: LicenseUnitsDetail,
    pub service_plans: Vec<ServicePlanInfo>,
    pub sku_id: String,
    pub sku_part_number: String,
    pub subscription_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    pub capabilities: &'static str,
    pub is_default: bool,
    pub is_initial: bool,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_domains: Option<Vec<VerifiedDomain>>,
}
