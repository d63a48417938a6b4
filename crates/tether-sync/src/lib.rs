//! tether-sync
