//! npm's `oidc-provider` run from a script in `tests/oidc` (`server.mjs` for
//! connector OAuth, `sso.mjs` for the hub's own sign-in), and the bits of
//! HTML and redirects the tests read while driving it without a browser.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// The running provider; killed when dropped.
pub struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `node SCRIPT ARGS...` in tests/oidc and waits until it says it is
/// listening.
pub fn start(script: &str, args: &[&str]) -> Node {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/oidc");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/oidc-provider")
            .exists(),
        "install Node.js and run `npm ci` in tests/oidc first (`.ci/run` does)"
    );
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting node (install Node.js)");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("listening") => break,
            Some(Ok(_)) => {}
            _ => panic!("oidc-provider did not start (tests/oidc/{script})"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Node(child)
}

/// The value of `<input ... name="NAME" value="VALUE">` in a page.
pub fn input_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name} in {html}"));
    let rest = &html[at..];
    let v = rest.find("value=\"").expect("a value") + 7;
    rest[v..v + rest[v..].find('"').unwrap()].to_owned()
}

/// The first form's `action`.
pub fn form_action(html: &str) -> String {
    let at = html.find("action=\"").expect("a form") + 8;
    html[at..at + html[at..].find('"').unwrap()].replace("&amp;", "&")
}

/// Where a redirect answer points, resolved against `base`.
pub fn location(resp: &reqwest::Response, base: &reqwest::Url) -> reqwest::Url {
    let loc = resp.headers()["location"].to_str().unwrap();
    base.join(loc).unwrap()
}
