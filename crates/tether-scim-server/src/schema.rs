//! The schemas this service provider supports (RFC 7643 §4, §8.7) and its
//! discovery documents: `ServiceProviderConfig` (§5), `ResourceTypes` (§6)
//! and `Schemas` (§7).
//!
//! Only what Tether really stores is declared: a client (Okta, Entra ID,
//! `scim2-tester`) reads these documents to know what it may send.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// The largest page a list answers (`filter.maxResults`).
pub const MAX_RESULTS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
}

impl AttrType {
    fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    /// `server` uniqueness (only `userName` and Group `displayName` here).
    pub unique: bool,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: Vec<Attribute>,
    pub description: &'static str,
}

impl Attribute {
    fn new(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        Attribute {
            name,
            ty,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            unique: false,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: Vec::new(),
            description,
        }
    }
    fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, AttrType::String, description)
    }
    fn complex(name: &'static str, description: &'static str, subs: Vec<Attribute>) -> Self {
        let mut a = Self::new(name, AttrType::Complex, description);
        a.sub_attributes = subs;
        a
    }
    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    fn canonical(mut self, v: &'static [&'static str]) -> Self {
        self.canonical_values = v;
        self
    }
    fn refs(mut self, v: &'static [&'static str]) -> Self {
        self.reference_types = v;
        self
    }

    /// A sub-attribute by name, case-insensitively (RFC 7643 §2.1).
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The attribute's definition as the `Schemas` document shows it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        if !self.canonical_values.is_empty() {
            v["canonicalValues"] = json!(self.canonical_values);
        }
        if self.ty == AttrType::Reference {
            v["referenceTypes"] = json!(self.reference_types);
        }
        if self.ty == AttrType::Complex {
            v["subAttributes"] =
                Value::Array(self.sub_attributes.iter().map(|a| a.to_json()).collect());
        }
        v
    }
}

/// A schema: its URN and attributes.
#[derive(Debug, Clone)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: Vec<Attribute>,
}

impl Schema {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn to_json(&self, base_url: &str) -> Value {
        json!({
            "schemas": [SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(|a| a.to_json()).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base_url}/Schemas/{}", self.id),
            },
        })
    }
}

/// A resource type: its endpoint, core schema and extensions.
#[derive(Debug)]
pub struct ResourceType {
    pub name: &'static str,
    pub endpoint: &'static str,
    pub description: &'static str,
    pub schema: Schema,
    /// Extensions, none of them required.
    pub extensions: Vec<Schema>,
}

/// The attributes every resource has (RFC 7643 §3.1): `id`, `externalId`,
/// `meta`. `id` and `meta` are the service provider's.
pub fn common_attributes() -> &'static [Attribute] {
    static COMMON: OnceLock<Vec<Attribute>> = OnceLock::new();
    COMMON.get_or_init(|| {
        vec![
            Attribute::string("id", "The service provider's identifier of the resource.")
                .case_exact()
                .mutability(Mutability::ReadOnly)
                .returned(Returned::Always)
                .unique(),
            Attribute::string("externalId", "The provisioning client's identifier.").case_exact(),
            Attribute::complex(
                "meta",
                "Resource metadata.",
                vec![
                    Attribute::string("resourceType", "The resource type.")
                        .case_exact()
                        .mutability(Mutability::ReadOnly),
                    Attribute::new("created", AttrType::DateTime, "When it was created.")
                        .mutability(Mutability::ReadOnly),
                    Attribute::new("lastModified", AttrType::DateTime, "When it last changed.")
                        .mutability(Mutability::ReadOnly),
                    Attribute::new("location", AttrType::Reference, "Its URI.")
                        .case_exact()
                        .refs(&["uri"])
                        .mutability(Mutability::ReadOnly),
                    Attribute::string("version", "Its version (a weak ETag).")
                        .case_exact()
                        .mutability(Mutability::ReadOnly),
                ],
            )
            .mutability(Mutability::ReadOnly),
        ]
    })
}

fn user_schema() -> Schema {
    use Attribute as A;
    const EMAIL_TYPES: &[&str] = &["work", "home", "other"];
    const PHONE_TYPES: &[&str] = &["work", "home", "mobile", "fax", "pager", "other"];
    Schema {
        id: USER,
        name: "User",
        description: "A person who may sign in to the hub.",
        attributes: vec![
            A::string(
                "userName",
                "Unique identifier of the user, used to sign in.",
            )
            .required()
            .unique(),
            A::complex(
                "name",
                "The user's name.",
                vec![
                    A::string("formatted", "The full name, formatted for display."),
                    A::string("familyName", "The family name."),
                    A::string("givenName", "The given name."),
                    A::string("middleName", "The middle name."),
                    A::string("honorificPrefix", "The honorific prefix."),
                    A::string("honorificSuffix", "The honorific suffix."),
                ],
            ),
            A::string("displayName", "The name shown for the user."),
            A::string("nickName", "The casual name of the user."),
            A::new(
                "profileUrl",
                AttrType::Reference,
                "The user's profile page.",
            )
            .refs(&["external"]),
            A::string("title", "The user's title."),
            A::string("userType", "The relationship to the organisation."),
            A::string("preferredLanguage", "Preferred language (RFC 7231 §5.3.5)."),
            A::string("locale", "Locale for localised values."),
            A::string("timezone", "Time zone (IANA name)."),
            A::new(
                "active",
                AttrType::Boolean,
                "Whether the user may sign in; false ends the user's sessions.",
            ),
            A::complex(
                "emails",
                "Email addresses; the primary one is the user's email in the hub.",
                vec![
                    A::string("value", "The email address."),
                    A::string("display", "A label for display."),
                    A::string("type", "The kind of address.").canonical(EMAIL_TYPES),
                    A::new("primary", AttrType::Boolean, "The primary address."),
                ],
            )
            .multi(),
            A::complex(
                "phoneNumbers",
                "Phone numbers.",
                vec![
                    A::string("value", "The phone number."),
                    A::string("display", "A label for display."),
                    A::string("type", "The kind of number.").canonical(PHONE_TYPES),
                    A::new("primary", AttrType::Boolean, "The primary number."),
                ],
            )
            .multi(),
            A::complex(
                "groups",
                "The groups the user belongs to (set through the Groups endpoint).",
                vec![
                    A::string("value", "The group's id.").mutability(Mutability::ReadOnly),
                    A::new("$ref", AttrType::Reference, "The group's URI.")
                        .refs(&["Group"])
                        .mutability(Mutability::ReadOnly),
                    A::string("display", "The group's name.").mutability(Mutability::ReadOnly),
                    A::string("type", "direct.")
                        .canonical(&["direct", "indirect"])
                        .mutability(Mutability::ReadOnly),
                ],
            )
            .multi()
            .mutability(Mutability::ReadOnly),
        ],
    }
}

fn enterprise_schema() -> Schema {
    use Attribute as A;
    Schema {
        id: ENTERPRISE_USER,
        name: "EnterpriseUser",
        description: "Enterprise user attributes (RFC 7643 §4.3).",
        attributes: vec![
            A::string("employeeNumber", "The employee number."),
            A::string("costCenter", "The cost center."),
            A::string("organization", "The organisation."),
            A::string("division", "The division."),
            A::string("department", "The department."),
            A::complex(
                "manager",
                "The user's manager.",
                vec![
                    A::string("value", "The manager's id."),
                    A::new("$ref", AttrType::Reference, "The manager's URI.").refs(&["User"]),
                    A::string("displayName", "The manager's display name.")
                        .mutability(Mutability::ReadOnly),
                ],
            ),
        ],
    }
}

fn group_schema() -> Schema {
    use Attribute as A;
    Schema {
        id: GROUP,
        name: "Group",
        description: "A group of users; a group may grant its members a hub role.",
        attributes: vec![
            A::string("displayName", "The group's name.")
                .required()
                .unique(),
            A::complex(
                "members",
                "The users in the group.",
                vec![
                    A::string("value", "The member's id.").mutability(Mutability::Immutable),
                    A::new("$ref", AttrType::Reference, "The member's URI.")
                        .refs(&["User"])
                        .mutability(Mutability::Immutable),
                    A::string("display", "The member's name.").mutability(Mutability::ReadOnly),
                    A::string("type", "The kind of member.")
                        .canonical(&["User"])
                        .mutability(Mutability::Immutable),
                ],
            )
            .multi(),
        ],
    }
}

/// The User resource type (with the enterprise extension).
pub fn user_type() -> &'static ResourceType {
    static T: OnceLock<ResourceType> = OnceLock::new();
    T.get_or_init(|| ResourceType {
        name: "User",
        endpoint: "/Users",
        description: "Users of the hub",
        schema: user_schema(),
        extensions: vec![enterprise_schema()],
    })
}

/// The Group resource type.
pub fn group_type() -> &'static ResourceType {
    static T: OnceLock<ResourceType> = OnceLock::new();
    T.get_or_init(|| ResourceType {
        name: "Group",
        endpoint: "/Groups",
        description: "Groups of the hub's users",
        schema: group_schema(),
        extensions: Vec::new(),
    })
}

pub fn resource_types() -> [&'static ResourceType; 2] {
    [user_type(), group_type()]
}

impl ResourceType {
    /// Every schema URN of the type (core first).
    pub fn schema_ids(&self) -> Vec<&'static str> {
        std::iter::once(self.schema.id)
            .chain(self.extensions.iter().map(|e| e.id))
            .collect()
    }

    /// The extension with this URN, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&Schema> {
        self.extensions
            .iter()
            .find(|e| e.id.eq_ignore_ascii_case(urn))
    }

    /// A top-level attribute: `urn` names the schema (None: the core schema
    /// or the common attributes).
    pub fn attribute(&self, urn: Option<&str>, name: &str) -> Option<&Attribute> {
        match urn {
            Some(u) if !u.eq_ignore_ascii_case(self.schema.id) => {
                self.extension(u)?.attribute(name)
            }
            _ => self.schema.attribute(name).or_else(|| {
                common_attributes()
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name))
            }),
        }
    }

    pub fn to_json(&self, base_url: &str) -> Value {
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": self.extensions.iter()
                .map(|e| json!({"schema": e.id, "required": false}))
                .collect::<Vec<_>>(),
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base_url}/ResourceTypes/{}", self.name),
            },
        })
    }
}

/// Every schema this provider serves.
pub fn schemas() -> Vec<&'static Schema> {
    let mut v = Vec::new();
    for t in resource_types() {
        v.push(&t.schema);
        v.extend(t.extensions.iter());
    }
    v
}

/// The `ServiceProviderConfig` document (RFC 7643 §5): what Tether really
/// supports.
pub fn service_provider_config(base_url: &str, documentation_uri: Option<&str>) -> Value {
    let mut v = json!({
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token made on the Identity settings page or by `tether scim token create NAME`, sent as `Authorization: Bearer <token>` (RFC 6750).",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig"),
        },
    });
    if let Some(d) = documentation_uri {
        v["documentationUri"] = json!(d);
    }
    v
}

/// A `ListResponse` of every item (discovery lists are not paged).
pub fn list_of(items: Vec<Value>) -> Value {
    let n = items.len();
    let mut m = Map::new();
    m.insert("schemas".into(), json!([crate::LIST_RESPONSE]));
    m.insert("totalResults".into(), json!(n));
    m.insert("itemsPerPage".into(), json!(n));
    m.insert("startIndex".into(), json!(1));
    m.insert("Resources".into(), Value::Array(items));
    Value::Object(m)
}
