//! tether-github
