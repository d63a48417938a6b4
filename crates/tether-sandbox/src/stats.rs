//! Request counters of one fake, by route.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts requests per named route, plus token-endpoint requests and
/// refreshes. The last route name is the catch-all for unmatched paths.
pub struct Stats {
    routes: &'static [&'static str],
    requests: AtomicU64,
    by_route: Vec<AtomicU64>,
    token_requests: AtomicU64,
    refreshes: AtomicU64,
}

impl Stats {
    pub fn new(routes: &'static [&'static str]) -> Self {
        Stats {
            routes,
            requests: AtomicU64::new(0),
            by_route: routes.iter().map(|_| AtomicU64::new(0)).collect(),
            token_requests: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        }
    }

    /// Counts one API request to route number `route` (an index into the
    /// names given to [`Stats::new`]).
    pub fn hit(&self, route: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.by_route.get(route) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refresh(&self) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `{requests, by_route: {name: n}, token_requests, refreshes}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut by = serde_json::Map::new();
        for (name, n) in self.routes.iter().zip(&self.by_route) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                by.insert(name.to_string(), n.into());
            }
        }
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "by_route": by,
            "token_requests": self.token_requests.load(Ordering::Relaxed),
            "refreshes": self.refreshes.load(Ordering::Relaxed),
        })
    }

    pub fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        for n in &self.by_route {
            n.store(0, Ordering::Relaxed);
        }
        self.token_requests.store(0, Ordering::Relaxed);
        self.refreshes.store(0, Ordering::Relaxed);
    }
}
