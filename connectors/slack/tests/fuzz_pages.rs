//! Fuzzes the connector's page parsers against its fake's real page shapes,
//! mutated (see `tether_conformance::fuzz`): no panic, no hang, and every
//! error names Slack and what was wrong. `cargo xtask fuzz --seconds N`
//! runs it longer.

#[test]
fn fuzz_pages_never_panic_and_every_error_names_the_provider() {
    tether_slack::ensure_linked();
    tether_conformance::fuzz::pages("slack", &["Slack"]);
}
