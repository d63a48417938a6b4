//! tether-e2e
