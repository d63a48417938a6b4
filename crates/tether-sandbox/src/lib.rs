//! tether-sandbox
