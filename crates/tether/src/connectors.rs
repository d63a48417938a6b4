//! Links every connector crate into the binary. A crate the binary never
//! calls into may be dropped by the linker, and its `inventory::submit!`
//! registration with it; adding an app means adding a line here.

pub fn ensure_linked() {
    tether_github::ensure_linked();
    tether_slack::ensure_linked();
}
