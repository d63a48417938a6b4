//! The LDAP connector against a real OpenLDAP server: Debian's `slapd`,
//! started by each test on free loopback ports with its own configuration
//! and an mdb database in a temporary directory, seeded from
//! `tests/seed.ldif` with `ldapadd`. Its TLS certificate is signed by a CA
//! made for the run with the `openssl` command (nothing secret is kept in
//! the repository).
//!
//! Needs `slapd`, `ldap-utils` and `openssl`; `.ci/run` installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::{ConnectorContext, Credentials, Kind, PageRequest, Source, SourceError};
use tether_store::{
    AccountQuery, ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection, Store,
};
use tether_sync::{sync, SyncOptions, SyncOutcome};

const BASE: &str = "dc=example,dc=org";
const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PW: &str = "test-only-root-password";
const BIND_DN: &str = "cn=tether,ou=services,dc=example,dc=org";
const BIND_PW: &str = "tether-test-password";
const INSTALL: &str = "install Debian's OpenLDAP server and tools: `DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils openssl` (.ci/run does it)";

fn find_tool(name: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed; {INSTALL}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it ({e}); {INSTALL}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (certificate and key) made for this run.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    run(
        Command::new(find_tool("openssl"))
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", &format!("/CN=Tether test CA {name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        "openssl (test CA)",
    );
    (cert, key)
}

/// A running `slapd` of one test. Killed when dropped.
struct Slapd {
    dir: tempfile::TempDir,
    child: Child,
    ldaps_port: u16,
    ldap_port: u16,
    ca: PathBuf,
    wrong_ca: PathBuf,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Slapd {
    fn start() -> Slapd {
        let slapd = find_tool("slapd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca, ca_key) = make_ca(d, "ca");
        let (wrong_ca, _) = make_ca(d, "wrong-ca");
        // The server's certificate, for the loopback address the tests use.
        let server_key = d.join("server.key");
        let csr = d.join("server.csr");
        let server_cert = d.join("server.pem");
        let ext = d.join("server.ext");
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(
            Command::new(find_tool("openssl"))
                .args([
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&server_key)
                .arg("-out")
                .arg(&csr),
            "openssl (server key)",
        );
        run(
            Command::new(find_tool("openssl"))
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&server_cert),
            "openssl (server certificate)",
        );
        let db = d.join("db");
        std::fs::create_dir(&db).unwrap();
        let schema = Path::new("/etc/ldap/schema");
        let module_dir = [
            "/usr/lib/ldap",
            "/usr/lib/x86_64-linux-gnu/ldap",
            "/usr/lib/aarch64-linux-gnu/ldap",
        ]
        .into_iter()
        .find(|p| Path::new(p).join("back_mdb.so").exists())
        .unwrap_or_else(|| panic!("slapd's back_mdb module is missing; {INSTALL}"));
        let conf = format!(
            "include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
modulepath {module_dir}
moduleload back_mdb
pidfile {d}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
sizelimit 500

database mdb
maxsize 104857600
suffix \"{BASE}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PW}
directory {db}
index objectClass eq
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact=\"{BIND_DN}\" read by * none
",
            schema = schema.display(),
            d = d.display(),
            ca = ca.display(),
            cert = server_cert.display(),
            key = server_key.display(),
            db = db.display(),
        );
        let conf_path = d.join("slapd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let (ldaps_port, ldap_port) = (free_port(), free_port());
        let log = std::fs::File::create(d.join("slapd.log")).unwrap();
        let child = Command::new(&slapd)
            .arg("-f")
            .arg(&conf_path)
            .arg("-h")
            .arg(format!(
                "ldaps://127.0.0.1:{ldaps_port}/ ldap://127.0.0.1:{ldap_port}/"
            ))
            // Stay in the foreground (so the test owns the process), log
            // nothing but errors.
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start slapd ({e}); {INSTALL}"));
        let mut s = Slapd {
            dir,
            child,
            ldaps_port,
            ldap_port,
            ca,
            wrong_ca,
        };
        s.wait_ready();
        s.ldap_cmd("ldapadd", &["-f", &seed_path()]);
        s
    }

    fn wait_ready(&mut self) {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "slapd exited ({status}): {}",
                    std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.ldap_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.ldaps_port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slapd did not listen on its ports");
    }

    /// Runs an ldap-utils command as the directory's root, over plain LDAP
    /// on loopback.
    fn ldap_cmd(&self, tool: &str, args: &[&str]) {
        run(
            Command::new(find_tool(tool))
                .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.ldap_port)])
                .args(["-D", ROOT_DN, "-w", ROOT_PW])
                .args(args),
            tool,
        );
    }

    /// Applies an LDIF of changes with `ldapmodify`.
    fn modify(&self, ldif: &str) {
        let p = self.dir.path().join("change.ldif");
        std::fs::write(&p, ldif).unwrap();
        self.ldap_cmd("ldapmodify", &["-f", p.to_str().unwrap()]);
    }

    fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// The settings of a connection over LDAPS with the run's CA, pages of 5.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("url", self.ldaps_url()),
            ("ca_file", self.ca.display().to_string()),
            ("base_dn", BASE.into()),
            ("page_size", "5".into()),
        ]
    }
}

fn seed_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seed.ldif")
        .display()
        .to_string()
}

/// The connector built through the registry, as the host builds it.
fn source(settings: &[(&str, String)], password: &str) -> Result<Box<dyn Source>, SourceError> {
    tether_ldap::ensure_linked();
    let descriptor = tether_core::registry::find("ldap").expect("the LDAP connector is registered");
    let map: Map<String, Value> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
        .collect();
    let settings = descriptor.validate_settings(map).expect("known settings");
    (descriptor.build)(ConnectorContext {
        connection_name: "Corp directory".into(),
        settings,
        credentials: Credentials::username_password(
            BIND_DN,
            SecretString::from(password.to_owned()),
        ),
        http: HttpClient::build_default(1, RetryPolicy::default()),
        token_fields: Default::default(),
        granted_scopes: Vec::new(),
    })
}

fn with(
    mut settings: Vec<(&'static str, String)>,
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    settings.retain(|(k, _)| *k != key);
    settings.push((key, value.into()));
    settings
}

async fn store() -> (tempfile::TempDir, Store, tether_store::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let conn = store
        .create_connection(NewConnection {
            app: "ldap",
            display_name: "Corp directory",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::UsernamePassword,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    (dir, store, conn)
}

async fn run_sync(store: &Store, conn: &tether_store::Connection, source: &dyn Source) {
    let outcome = sync(
        store,
        conn,
        source,
        &SyncOptions::default(),
        &|_| {},
        std::future::pending(),
    )
    .await
    .expect("the sync completes");
    assert!(matches!(outcome, SyncOutcome::Completed(_)), "{outcome:?}");
}

/// (holder kind, holder id or key, resolved) of a group's memberships, sorted.
async fn members_of(store: &Store, conn: i64, group: &str) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = store
        .query_edges(
            conn,
            &Kind::Membership.into(),
            &EdgeQuery {
                target: Some(group),
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.holder_kind, e.holder_external_id, e.resolved))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_over_ldaps_resolves_members_nested_groups_and_removals() {
    let slapd = Slapd::start();
    let src = source(&slapd.settings(), BIND_PW).unwrap();
    let who = src
        .verify()
        .await
        .expect("the bind over LDAPS with the run's CA works");
    assert!(who.name.contains(BASE), "{}", who.name);

    let (_dir, store, conn) = store().await;
    run_sync(&store, &conn, src.as_ref()).await;

    let accounts = store
        .query_accounts(
            conn.id,
            &AccountQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(accounts.len(), 12, "every person, across three pages of 5");
    let ada = accounts
        .iter()
        .find(|a| a.username.as_deref() == Some("ada"))
        .expect("ada");
    assert_eq!(ada.email.as_deref(), Some("ada@example.org"));
    assert_eq!(ada.display_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        ada.dn.as_deref(),
        Some("uid=ada,ou=people,dc=example,dc=org")
    );
    assert!(
        ada.other_emails()
            .contains(&"countess@example.org".to_owned()),
        "{:?}",
        ada.emails
    );
    // The stable id is the entry's entryUUID (RFC 4530), not its DN.
    assert_eq!(ada.external_id.len(), 36, "{}", ada.external_id);
    assert_eq!(
        ada.external_id.matches('-').count(),
        4,
        "{}",
        ada.external_id
    );

    let groups = store
        .query_resources(conn.id, &Kind::Group.into(), false, None, 100)
        .await
        .unwrap();
    assert_eq!(groups.len(), 7, "7 groups across two pages of 5");
    let id_of_group = |name: &str| {
        groups
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("group {name}"))
            .external_id
            .clone()
    };
    let id_of_user = |uid: &str| {
        accounts
            .iter()
            .find(|a| a.username.as_deref() == Some(uid))
            .unwrap_or_else(|| panic!("user {uid}"))
            .external_id
            .clone()
    };
    let account = |uid: &str| ("account".to_owned(), id_of_user(uid), true);

    // `member` DNs resolve to accounts through the DN alternate key; a
    // member that is a group is a group-held (nested) membership.
    let mut want = vec![
        account("ada"),
        account("alan"),
        ("group".to_owned(), id_of_group("platform"), true),
    ];
    want.sort();
    assert_eq!(
        members_of(&store, conn.id, &id_of_group("engineering")).await,
        want
    );
    // A group with more members than a page.
    let everyone = members_of(&store, conn.id, &id_of_group("everyone")).await;
    assert_eq!(everyone.len(), 12, "{everyone:?}");
    assert!(
        everyone
            .iter()
            .all(|(k, _, resolved)| k == "account" && *resolved),
        "{everyone:?}"
    );
    // groupOfUniqueNames, one value with the optional unique identifier.
    let mut want = vec![account("margaret"), account("radia")];
    want.sort();
    assert_eq!(
        members_of(&store, conn.id, &id_of_group("admins")).await,
        want
    );
    // posixGroup: memberUid resolves by username.
    let mut want = vec![account("ken"), account("dennis")];
    want.sort();
    assert_eq!(
        members_of(&store, conn.id, &id_of_group("developers")).await,
        want
    );

    // John leaves between two syncs.
    let john = id_of_user("john");
    slapd.modify(
        "dn: cn=everyone,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=john,ou=people,dc=example,dc=org\n",
    );
    slapd.ldap_cmd("ldapdelete", &["uid=john,ou=people,dc=example,dc=org"]);
    let src = source(&slapd.settings(), BIND_PW).unwrap();
    run_sync(&store, &conn, src.as_ref()).await;
    let after = store
        .query_accounts(
            conn.id,
            &AccountQuery {
                limit: 100,
                include_removed: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let gone = after
        .iter()
        .find(|a| a.external_id == john)
        .expect("john is kept");
    assert!(gone.removed_at.is_some(), "john is marked removed");
    assert_eq!(after.iter().filter(|a| a.removed_at.is_none()).count(), 11);
    assert_eq!(
        members_of(&store, conn.id, &id_of_group("everyone"))
            .await
            .len(),
        11
    );
}

/// Follows a stream to its end: the records of each page.
async fn pages(src: &dyn Source, stream: &str, first: Option<tether_core::Cursor>) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut cursor = first;
    loop {
        let page = src
            .list_page(PageRequest::new(stream, None, cursor.as_ref()))
            .await
            .expect("a page");
        sizes.push(page.records.len());
        match page.next {
            Some(n) => cursor = Some(n),
            None => return sizes,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_paged_and_a_resumed_listing_starts_again() {
    let slapd = Slapd::start();
    let src = source(&slapd.settings(), BIND_PW).unwrap();
    assert_eq!(pages(src.as_ref(), "accounts", None).await, vec![5, 5, 2]);
    assert_eq!(pages(src.as_ref(), "groups", None).await, vec![5, 2]);

    // A run checkpointed after the first page, then the process died: the
    // new process's source gets the stored cursor, whose paged-results
    // cookie belonged to the dead connection.
    let first = src
        .list_page(PageRequest::new("accounts", None, None))
        .await
        .unwrap();
    let stored = first.next.clone().expect("more pages");
    drop(src);
    let resumed = source(&slapd.settings(), BIND_PW).unwrap();
    let again = resumed
        .list_page(PageRequest::new("accounts", None, Some(&stored)))
        .await
        .expect("the resumed listing does not fail");
    assert_eq!(
        again.records, first.records,
        "it starts again from its first page"
    );
    assert_eq!(
        pages(resumed.as_ref(), "accounts", again.next).await,
        vec![5, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_explicit_plaintext_work_and_bad_transport_is_refused() {
    let slapd = Slapd::start();
    // ldap:// upgrades with StartTLS by default, verified against the CA.
    let starttls = with(slapd.settings(), "url", &slapd.ldap_url());
    source(&starttls, BIND_PW)
        .unwrap()
        .verify()
        .await
        .expect("StartTLS with the CA");

    // ldap:// in clear only with allow_plaintext.
    let plain = with(starttls.clone(), "starttls", "false");
    let err = source(&plain, BIND_PW).err().expect("refused");
    assert!(matches!(err, SourceError::Misconfigured { .. }), "{err:?}");
    assert!(err.to_string().contains("allow_plaintext = true"), "{err}");
    let allowed = with(plain, "allow_plaintext", "true");
    source(&allowed, BIND_PW)
        .unwrap()
        .verify()
        .await
        .expect("plain LDAP when allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_named_for_the_operator() {
    let slapd = Slapd::start();

    // A CA that did not sign the server's certificate.
    let wrong = with(
        slapd.settings(),
        "ca_file",
        &slapd.wrong_ca.display().to_string(),
    );
    let err = source(&wrong, BIND_PW).unwrap().verify().await.unwrap_err();
    assert!(matches!(err, SourceError::Misconfigured { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("TLS handshake"), "{msg}");
    assert!(msg.contains("ca_file"), "{msg}");
    assert!(msg.contains(&slapd.wrong_ca.display().to_string()), "{msg}");
    assert!(msg.contains("Corp directory"), "{msg}");
    // The same refusal over StartTLS.
    let wrong_starttls = with(wrong, "url", &slapd.ldap_url());
    let err = source(&wrong_starttls, BIND_PW)
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ca_file"), "{err}");

    // A wrong password: the credentials are refused (LDAP result 49).
    let err = source(&slapd.settings(), "not-the-password")
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::CredentialsRejected { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("LDAP result 49"), "{err}");

    // A base DN that does not exist.
    let nowhere = with(slapd.settings(), "base_dn", "dc=nowhere,dc=org");
    let err = source(&nowhere, BIND_PW)
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("base_dn"), "{err}");

    // Nothing listens there.
    let port = free_port();
    let closed = with(
        slapd.settings(),
        "url",
        &format!("ldaps://127.0.0.1:{port}"),
    );
    let err = source(&closed, BIND_PW)
        .unwrap()
        .verify()
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
}
