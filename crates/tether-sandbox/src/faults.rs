//! Semantic faults: what goes wrong, named the same way for every provider.
//! Each fake renders a fault in its own wire format (GitHub answers a
//! rejected credential with 401 and a JSON message; another app may answer
//! HTTP 200 with `ok:false`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FaultKind {
    /// The provider's rate limit (or a secondary limit) refuses the request.
    /// `status` is a hint for providers with several (GitHub: 403 or 429).
    RateLimited { status: Option<u16> },
    /// The credential is unknown, expired or revoked.
    CredentialsRejected,
    /// The credential lacks a scope; `scope` names it where the provider says.
    ScopeMissing { scope: Option<String> },
    /// A 5xx.
    ServerError { status: u16 },
    /// Any other status, in the provider's error format.
    Status { status: u16 },
    /// A success status with a truncated or invalid body.
    Malformed,
    /// A success status with an empty body.
    Empty,
    /// The request is answered normally after `ms` milliseconds.
    Slow { ms: u64 },
}

/// An armed fault: it hits the next `count` matching requests after letting
/// `skip` of them through.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    pub path_contains: Option<String>,
    pub skip: u64,
    pub count: u64,
    /// Seconds the provider tells the client to wait (`Retry-After` or the
    /// provider's equivalent), for rate limits and server errors.
    pub retry_after: Option<u64>,
}

/// The JSON accepted by `POST /{fake}/_sandbox/faults`. The semantic form
/// names a `fault`; the legacy form (`kind: "status" | "malformed" |
/// "empty_200"`, `status`) is still accepted and mapped onto it.
#[derive(Debug, Clone, Deserialize)]
pub struct FaultSpec {
    pub fault: Option<String>,
    pub kind: Option<String>,
    pub status: Option<u16>,
    pub scope: Option<String>,
    pub ms: Option<u64>,
    pub path_contains: Option<String>,
    #[serde(default)]
    pub skip: u64,
    #[serde(default = "one")]
    pub count: u64,
    pub retry_after: Option<u64>,
}

fn one() -> u64 {
    1
}

impl FaultSpec {
    pub fn into_fault(self) -> Result<Fault, String> {
        if self.count == 0 {
            return Err("count must be >= 1".into());
        }
        let kind = match (self.fault.as_deref(), self.kind.as_deref()) {
            (Some("rate_limited"), _) => FaultKind::RateLimited {
                status: self.status,
            },
            (Some("credentials_rejected"), _) => FaultKind::CredentialsRejected,
            (Some("scope_missing"), _) => FaultKind::ScopeMissing { scope: self.scope },
            (Some("server_error"), _) => FaultKind::ServerError {
                status: self.status.unwrap_or(500),
            },
            (Some("malformed"), _) => FaultKind::Malformed,
            (Some("empty"), _) => FaultKind::Empty,
            (Some("slow"), _) => FaultKind::Slow {
                ms: self.ms.unwrap_or(1000),
            },
            (Some(other), _) => {
                return Err(format!(
                    "unknown fault `{other}` (rate_limited, credentials_rejected, scope_missing, \
                     server_error, malformed, empty, slow)"
                ))
            }
            (None, Some("malformed")) => FaultKind::Malformed,
            (None, Some("empty_200")) => FaultKind::Empty,
            (None, None | Some("status")) => match self.status.unwrap_or(500) {
                401 => FaultKind::CredentialsRejected,
                s @ (403 | 429) => FaultKind::RateLimited { status: Some(s) },
                s @ 500..=599 => FaultKind::ServerError { status: s },
                s if (100..=999).contains(&s) => FaultKind::Status { status: s },
                s => return Err(format!("{s} is not an HTTP status")),
            },
            (None, Some(other)) => return Err(format!("unknown fault kind `{other}`")),
        };
        Ok(Fault {
            kind,
            path_contains: self.path_contains,
            skip: self.skip,
            count: self.count,
            retry_after: self.retry_after,
        })
    }
}

/// The armed faults of one fake.
#[derive(Default)]
pub struct Faults {
    armed: Mutex<Vec<Fault>>,
    active: AtomicBool,
}

impl Faults {
    pub fn arm(&self, fault: Fault) -> usize {
        let mut f = self.armed.lock().unwrap();
        f.push(fault);
        self.active.store(true, Ordering::Relaxed);
        f.len()
    }

    pub fn clear(&self) {
        self.armed.lock().unwrap().clear();
        self.active.store(false, Ordering::Relaxed);
    }

    pub fn list(&self) -> Vec<Fault> {
        self.armed.lock().unwrap().clone()
    }

    /// The fault that hits a request for `path`, if any (consuming one of its
    /// count). With `require_explicit`, only faults whose `path_contains`
    /// matches apply (token endpoints are not hit by catch-all faults).
    pub fn take(&self, path: &str, require_explicit: bool) -> Option<Fault> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        let mut faults = self.armed.lock().unwrap();
        let idx = faults.iter().position(|f| match &f.path_contains {
            Some(p) => path.contains(p.as_str()),
            None => !require_explicit,
        })?;
        let f = &mut faults[idx];
        if f.skip > 0 {
            f.skip -= 1;
            return None;
        }
        let hit = f.clone();
        f.count = f.count.saturating_sub(1);
        if f.count == 0 {
            faults.remove(idx);
        }
        self.active.store(!faults.is_empty(), Ordering::Relaxed);
        Some(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Result<Fault, String> {
        serde_json::from_value::<FaultSpec>(v).unwrap().into_fault()
    }

    #[test]
    fn legacy_statuses_map_to_semantic_faults() {
        let f = spec(serde_json::json!({"status": 401})).unwrap();
        assert_eq!(f.kind, FaultKind::CredentialsRejected);
        let f = spec(serde_json::json!({"status": 429, "retry_after": 2})).unwrap();
        assert_eq!(f.kind, FaultKind::RateLimited { status: Some(429) });
        assert_eq!(f.retry_after, Some(2));
        let f = spec(serde_json::json!({"kind": "empty_200"})).unwrap();
        assert_eq!(f.kind, FaultKind::Empty);
        assert!(spec(serde_json::json!({"fault": "gremlins"})).is_err());
        assert!(spec(serde_json::json!({"count": 0})).is_err());
    }

    #[test]
    fn skip_count_and_explicit_paths() {
        let faults = Faults::default();
        faults.arm(spec(serde_json::json!({"fault": "empty", "skip": 1, "count": 2})).unwrap());
        assert!(
            faults.take("/token", true).is_none(),
            "catch-all spares token paths"
        );
        assert!(faults.take("/a", false).is_none(), "skipped");
        assert!(faults.take("/a", false).is_some());
        assert!(faults.take("/a", false).is_some());
        assert!(faults.take("/a", false).is_none(), "count used up");
    }
}
