//! The SCIM filter language (RFC 7644 §3.4.2.2) and attribute paths.
//!
//! Attribute names and operators are case-insensitive; string values compare
//! case-insensitively unless the attribute is `caseExact` (RFC 7643 §2.2);
//! `dateTime` values compare chronologically; `boolean` values support only
//! `eq`, `ne` and `pr`, and complex attributes only `pr` (anything else is
//! `invalidFilter`). A filter naming an attribute the schema does not have
//! matches nothing.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::schema::{AttrType, Attribute, ResourceType};
use crate::ScimError;

/// `[urn:]name[.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN, when the path names it.
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Parses `[URI ":"] ATTRNAME ["." subAttr]` (RFC 7644 §3.10).
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        let bad = || ScimError::invalid_path(format!("`{s}` is not an attribute path"));
        let (urn, rest) = if s.len() > 4 && s[..4].eq_ignore_ascii_case("urn:") {
            let i = s.rfind(':').ok_or_else(bad)?;
            (Some(s[..i].to_owned()), &s[i + 1..])
        } else {
            (None, s)
        };
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        if !valid_name(name) || sub.is_some_and(|s| !valid_name(s)) {
            return Err(bad());
        }
        Ok(AttrPath {
            urn,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for AttrPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

fn valid_name(n: &str) -> bool {
    if n == "$ref" {
        return true;
    }
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
    fn ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, CompareOp, Value),
    /// `attr[filter]`: some value of the multi-valued complex `attr`
    /// matches `filter`, whose paths name its sub-attributes.
    ValuePath(AttrPath, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    LBracket,
    RBracket,
    Word(String),
    Str(String),
}

fn lex(s: &str) -> Result<Vec<Token>, ScimError> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1
            }
            b')' => {
                out.push(Token::Close);
                i += 1
            }
            b'[' => {
                out.push(Token::LBracket);
                i += 1
            }
            b']' => {
                out.push(Token::RBracket);
                i += 1
            }
            b'"' => {
                // A JSON string: find its closing quote, honouring escapes.
                let start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => {
                            return Err(ScimError::invalid_filter(format!(
                                "unterminated string in filter `{s}`"
                            )))
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                let lit: String = serde_json::from_str(&s[start..i]).map_err(|_| {
                    ScimError::invalid_filter(format!("bad string literal in filter `{s}`"))
                })?;
                out.push(Token::Str(lit));
            }
            _ => {
                let start = i;
                while i < b.len()
                    && !matches!(
                        b[i],
                        b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b'[' | b']' | b'"'
                    )
                {
                    i += 1;
                }
                out.push(Token::Word(s[start..i].to_owned()));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    src: &'a str,
    /// Inside `attr[...]`: no nested value paths.
    in_brackets: bool,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> ScimError {
        ScimError::invalid_filter(format!("{what} in filter `{}`", self.src))
    }
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Filter, ScimError> {
        if self.keyword("not") {
            self.pos += 1;
            if self.next() != Some(Token::Open) {
                return Err(self.err("`not` must be followed by `(`"));
            }
            let f = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err(self.err("missing `)`"));
            }
            return Ok(Filter::Not(Box::new(f)));
        }
        match self.next() {
            Some(Token::Open) => {
                let f = self.or()?;
                if self.next() != Some(Token::Close) {
                    return Err(self.err("missing `)`"));
                }
                Ok(f)
            }
            Some(Token::Word(w)) => self.attr_exp(&w),
            Some(_) => Err(self.err("unexpected token")),
            None => Err(self.err("unexpected end")),
        }
    }
    fn attr_exp(&mut self, word: &str) -> Result<Filter, ScimError> {
        let path = AttrPath::parse(word)
            .map_err(|_| self.err(&format!("`{word}` is not an attribute path")))?;
        if self.peek() == Some(&Token::LBracket) {
            if self.in_brackets || path.sub.is_some() {
                return Err(self.err("nested value filter"));
            }
            self.pos += 1;
            self.in_brackets = true;
            let inner = self.or()?;
            self.in_brackets = false;
            if self.next() != Some(Token::RBracket) {
                return Err(self.err("missing `]`"));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        let op = match self.next() {
            Some(Token::Word(op)) => op,
            _ => return Err(self.err(&format!("missing operator after `{word}`"))),
        };
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op =
            CompareOp::parse(&op).ok_or_else(|| self.err(&format!("unknown operator `{op}`")))?;
        let value = match self.next() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&w)
                    .map(Value::Number)
                    .map_err(|_| self.err(&format!("`{w}` is not a value")))?,
            },
            _ => return Err(self.err("missing comparison value")),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

impl Filter {
    /// Parses a filter expression.
    pub fn parse(s: &str) -> Result<Filter, ScimError> {
        let toks = lex(s)?;
        let mut p = Parser {
            toks,
            pos: 0,
            src: s,
            in_brackets: false,
        };
        let f = p.or()?;
        if p.pos != p.toks.len() {
            return Err(p.err("unexpected trailing input"));
        }
        Ok(f)
    }

    /// Checks the operators against the attributes' types (RFC 7644
    /// §3.4.2.2: `gt`..`le` on a boolean or complex attribute, or any
    /// comparison of a complex one, is `invalidFilter`).
    pub fn check(&self, rt: &ResourceType) -> Result<(), ScimError> {
        self.check_in(&Scope::Root(rt))
    }

    fn check_in(&self, scope: &Scope<'_>) -> Result<(), ScimError> {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.check_in(scope)?;
                b.check_in(scope)
            }
            Filter::Not(a) => a.check_in(scope),
            Filter::Present(_) => Ok(()),
            Filter::Compare(path, op, value) => {
                let Some(def) = scope.leaf(path) else {
                    return Ok(());
                };
                match def.ty {
                    AttrType::Complex => Err(ScimError::invalid_filter(format!(
                        "`{path}` is complex; compare one of its sub-attributes"
                    ))),
                    AttrType::Boolean if op.ordering() => Err(ScimError::invalid_filter(format!(
                        "`{path}` is a boolean; only eq, ne and pr apply"
                    ))),
                    AttrType::Boolean
                        if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) =>
                    {
                        Err(ScimError::invalid_filter(format!(
                            "`{path}` is a boolean; only eq, ne and pr apply"
                        )))
                    }
                    AttrType::DateTime if value.is_string() => {
                        let s = value.as_str().unwrap_or_default();
                        if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                            Err(ScimError::invalid_filter(format!(
                                "`{s}` is not an xsd:dateTime for `{path}`"
                            )))
                        } else {
                            Ok(())
                        }
                    }
                    _ => Ok(()),
                }
            }
            Filter::ValuePath(path, inner) => match scope.top(path) {
                Some(def) if def.ty == AttrType::Complex => inner.check_in(&Scope::Element(def)),
                Some(_) => Err(ScimError::invalid_filter(format!(
                    "`{path}` is not a complex attribute; it takes no [filter]"
                ))),
                None => Ok(()),
            },
        }
    }

    /// Whether `resource` (a resource's JSON) matches.
    pub fn matches(&self, rt: &ResourceType, resource: &Map<String, Value>) -> bool {
        self.eval(&Scope::Root(rt), resource)
    }

    /// Whether one value of a multi-valued complex attribute matches, the
    /// filter's paths naming its sub-attributes (`members[value eq "2"]`).
    pub fn matches_element(&self, attr: &Attribute, element: &Value) -> bool {
        match element.as_object() {
            Some(o) => self.eval(&Scope::Element(attr), o),
            None => false,
        }
    }

    fn eval(&self, scope: &Scope<'_>, obj: &Map<String, Value>) -> bool {
        match self {
            Filter::And(a, b) => a.eval(scope, obj) && b.eval(scope, obj),
            Filter::Or(a, b) => a.eval(scope, obj) || b.eval(scope, obj),
            Filter::Not(a) => !a.eval(scope, obj),
            Filter::Present(path) => scope.values(path, obj).iter().any(|v| present(v)),
            Filter::Compare(path, op, lit) => {
                let def = scope.leaf(path);
                let values = scope.values(path, obj);
                if lit.is_null() {
                    let any = values.iter().any(|v| present(v));
                    return match op {
                        CompareOp::Eq => !any,
                        CompareOp::Ne => any,
                        _ => false,
                    };
                }
                if *op == CompareOp::Ne {
                    return !values.iter().any(|v| compare(def, v, CompareOp::Eq, lit));
                }
                values.iter().any(|v| compare(def, v, *op, lit))
            }
            Filter::ValuePath(path, inner) => {
                let Some(def) = scope.top(path) else {
                    return false;
                };
                let target = scope.object_for(path, obj);
                let Some(v) = target.and_then(|o| get_ci(o, &path.name)) else {
                    return false;
                };
                let elements: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                let sub_scope = Scope::Element(def);
                elements
                    .into_iter()
                    .filter_map(Value::as_object)
                    .any(|e| inner.eval(&sub_scope, e))
            }
        }
    }
}

/// Where a filter's paths are resolved: a resource, or one value of a
/// complex attribute.
enum Scope<'a> {
    Root(&'a ResourceType),
    Element(&'a Attribute),
}

impl Scope<'_> {
    /// The attribute a path's name names.
    fn top(&self, path: &AttrPath) -> Option<&Attribute> {
        match self {
            Scope::Root(rt) => rt.attribute(path.urn.as_deref(), &path.name),
            Scope::Element(a) => a.sub(&path.name),
        }
    }
    /// The attribute a whole path names (its sub-attribute when it has one;
    /// the `value` sub-attribute of a complex attribute named alone).
    fn leaf(&self, path: &AttrPath) -> Option<&Attribute> {
        let top = self.top(path)?;
        match &path.sub {
            Some(s) => top.sub(s),
            None if top.ty == AttrType::Complex && top.multi_valued => {
                top.sub("value").or(Some(top))
            }
            None => Some(top),
        }
    }
    fn object_for<'o>(
        &self,
        path: &AttrPath,
        obj: &'o Map<String, Value>,
    ) -> Option<&'o Map<String, Value>> {
        match (self, &path.urn) {
            (Scope::Root(rt), Some(u)) if !u.eq_ignore_ascii_case(rt.schema.id) => {
                get_ci(obj, u)?.as_object()
            }
            _ => Some(obj),
        }
    }
    /// Every value the path reaches, multi-valued attributes flattened.
    fn values<'o>(&self, path: &AttrPath, obj: &'o Map<String, Value>) -> Vec<&'o Value> {
        let Some(target) = self.object_for(path, obj) else {
            return Vec::new();
        };
        let Some(v) = get_ci(target, &path.name) else {
            return Vec::new();
        };
        let top = self.top(path);
        let sub = path.sub.as_deref().or_else(|| {
            top.filter(|a| a.ty == AttrType::Complex && a.multi_valued && a.sub("value").is_some())
                .map(|_| "value")
        });
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        match sub {
            None => items,
            Some(s) => items
                .into_iter()
                .filter_map(|i| i.as_object().and_then(|o| get_ci(o, s)))
                .collect(),
        }
    }
}

/// A value counts as present unless null, an empty string, array or object
/// (RFC 7644 §3.4.2.2, `pr`).
pub fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(present),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// A key of a JSON object, case-insensitively (RFC 7643 §2.1).
pub fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The real key of `key` in `obj`, case-insensitively.
pub fn key_ci(obj: &Map<String, Value>, key: &str) -> Option<String> {
    if obj.contains_key(key) {
        return Some(key.to_owned());
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// Compares one attribute value with a literal; `def` gives the type and
/// case sensitivity (unknown: inferred from the JSON, case-insensitive).
fn compare(def: Option<&Attribute>, v: &Value, op: CompareOp, lit: &Value) -> bool {
    let ty = def.map(|d| d.ty);
    let case_exact = def.is_some_and(|d| d.case_exact);
    match (v, lit) {
        (Value::String(a), Value::String(b)) if ty == Some(AttrType::DateTime) => {
            match (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(b),
            ) {
                (Ok(x), Ok(y)) => ordered(x.cmp(&y), op),
                _ => false,
            }
        }
        (Value::String(a), Value::String(b)) => {
            let (a, b) = if case_exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordered(a.cmp(&b), op),
            }
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => match x.partial_cmp(&y) {
                Some(o) => match op {
                    CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
                    _ => ordered(o, op),
                },
                None => false,
            },
            _ => false,
        },
        _ => false,
    }
}

fn ordered(o: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        _ => false,
    }
}

/// A PATCH path (RFC 7644 §3.5.2): `attrPath` or `valuePath ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    /// `attr[filter]`: the values of `attr` the operation applies to.
    pub filter: Option<Filter>,
    /// `attr[filter].sub`.
    pub sub_after_filter: Option<String>,
}

impl PatchPath {
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        let bad = |what: &str| ScimError::invalid_path(format!("`{s}`: {what}"));
        let Some(open) = s.find('[') else {
            return Ok(PatchPath {
                attr: AttrPath::parse(s.trim())?,
                filter: None,
                sub_after_filter: None,
            });
        };
        let close = s.rfind(']').ok_or_else(|| bad("missing `]`"))?;
        if close < open {
            return Err(bad("misplaced `]`"));
        }
        let attr = AttrPath::parse(s[..open].trim())?;
        if attr.sub.is_some() {
            return Err(bad(
                "a value filter follows an attribute, not a sub-attribute",
            ));
        }
        let filter = Filter::parse(&s[open + 1..close]).map_err(|e| bad(&e.detail))?;
        let rest = s[close + 1..].trim();
        let sub_after_filter = if rest.is_empty() {
            None
        } else {
            let sub = rest
                .strip_prefix('.')
                .ok_or_else(|| bad("expected `.subAttribute` after `]`"))?;
            if !valid_name(sub) {
                return Err(bad("bad sub-attribute"));
            }
            Some(sub.to_owned())
        };
        Ok(PatchPath {
            attr,
            filter: Some(filter),
            sub_after_filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{group_type, user_type};
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({
            "schemas": [crate::schema::USER, crate::schema::ENTERPRISE_USER],
            "id": "42",
            "externalId": "Ext-1",
            "userName": "Bjensen@Example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"lastModified": "2026-05-13T04:42:34Z", "created": "2026-01-23T04:56:22Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Tour Operations"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn m(f: &str) -> bool {
        let f = Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        f.check(user_type()).unwrap();
        f.matches(user_type(), &user())
    }

    #[test]
    fn operators_on_strings_honour_case_exactness() {
        assert!(
            m(r#"userName eq "bjensen@example.com""#),
            "userName is caseExact=false"
        );
        assert!(
            m(r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#),
            "names and operators ignore case"
        );
        assert!(!m(r#"externalId eq "ext-1""#), "externalId is caseExact");
        assert!(m(r#"externalId eq "Ext-1""#));
        assert!(m(r#"name.familyName co "ens""#));
        assert!(m(r#"name.familyName sw "J""#));
        assert!(m(r#"name.familyName ew "SEN""#));
        assert!(!m(r#"name.familyName sw "x""#));
        assert!(m(r#"userName ne "someone""#));
        assert!(!m(r#"userName ne "bjensen@example.com""#));
        assert!(m(r#"name.givenName gt "A""#) && !m(r#"name.givenName lt "A""#));
        assert!(m(r#"name.givenName ge "barbara""#) && m(r#"name.givenName le "Barbara""#));
    }

    #[test]
    fn presence_booleans_dates_and_logic() {
        assert!(!m("title pr"));
        assert!(m("name.familyName pr"));
        assert!(m("active eq true") && !m("active eq false") && m("active ne false"));
        assert!(m(r#"meta.lastModified gt "2026-05-01T00:00:00Z""#));
        assert!(
            !m(r#"meta.lastModified gt "2026-05-13T06:42:34+02:00""#),
            "same instant"
        );
        assert!(m(r#"meta.lastModified ge "2026-05-13T06:42:34+02:00""#));
        assert!(m(
            r#"userName sw "b" and (active eq false or name.givenName eq "barbara")"#
        ));
        assert!(!m(r#"not (userName sw "b")"#));
        assert!(m(r#"not (userName sw "x") and not(title pr)"#));
        // and binds tighter than or
        assert!(m(r#"userName eq "x" and title pr or active eq true"#));
        assert!(!m(r#"userName eq "x" and (title pr or active eq true)"#));
    }

    #[test]
    fn multi_valued_and_value_paths_and_extensions() {
        assert!(
            m(r#"emails co "jensen.org""#),
            "a complex attribute alone compares its value"
        );
        assert!(m(r#"emails.value eq "babs@jensen.org""#));
        assert!(m(r#"emails[type eq "work" and value co "@example.com"]"#));
        assert!(!m(r#"emails[type eq "home" and value co "@example.com"]"#));
        assert!(m(r#"emails[primary eq true]"#));
        assert!(m(r#"emails.type eq "home""#));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bj""#
        ));
        assert!(
            !m(r#"nosuchattribute eq "x""#),
            "unknown attributes match nothing"
        );
    }

    #[test]
    fn invalid_filters_are_invalid_filter_errors() {
        for f in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName zz "x""#,
            r#"userName eq "x" and"#,
            r#"(userName eq "x""#,
            r#"not userName eq "x""#,
            r#"userName eq "unterminated"#,
            r#"emails[type eq "work""#,
            r#"emails[value[x eq "y"]]"#,
            r#"userName eq bare"#,
        ] {
            let e = Filter::parse(f).expect_err(f);
            assert_eq!(e.status, 400, "{f}");
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter), "{f}");
        }
        for f in [
            "active gt true",
            "name eq \"x\"",
            "active co \"t\"",
            r#"meta.created gt "yesterday""#,
        ] {
            let e = Filter::parse(f).unwrap().check(user_type()).expect_err(f);
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter), "{f}");
        }
    }

    #[test]
    fn escaped_strings_and_numbers() {
        let f = Filter::parse(r#"displayName eq "a \"quoted\" \u00e9""#).unwrap();
        assert_eq!(
            f,
            Filter::Compare(
                AttrPath::parse("displayName").unwrap(),
                CompareOp::Eq,
                json!("a \"quoted\" é")
            )
        );
        let g = json!({"displayName": "a \"quoted\" é"});
        assert!(f.matches(group_type(), g.as_object().unwrap()));
        assert!(
            matches!(Filter::parse("x gt 1.5").unwrap(), Filter::Compare(_, CompareOp::Gt, v) if v == json!(1.5))
        );
    }

    #[test]
    fn patch_paths() {
        let p = PatchPath::parse(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub_after_filter.as_deref(), Some("value"));
        assert!(p.filter.is_some());
        let p = PatchPath::parse("name.familyName").unwrap();
        assert_eq!(
            (p.attr.name.as_str(), p.attr.sub.as_deref()),
            ("name", Some("familyName"))
        );
        let p = PatchPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some(crate::schema::ENTERPRISE_USER));
        assert_eq!(
            (p.attr.name.as_str(), p.attr.sub.as_deref()),
            ("manager", Some("value"))
        );
        let p = PatchPath::parse(r#"members[value eq "2"]"#).unwrap();
        assert!(p.filter.is_some() && p.sub_after_filter.is_none());
        for bad in [
            "",
            "emails[",
            "emails]x[",
            "emails[type eq \"w\"]value",
            "1abc",
            "name.familyName[x pr]",
        ] {
            assert_eq!(PatchPath::parse(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
