//! Encryption of credentials at rest.
//!
//! XChaCha20-Poly1305 (RustCrypto) under a 32-byte master key, a random
//! 24-byte nonce per write, and associated data naming what the blob belongs
//! to, so a ciphertext copied onto another connection does not decrypt.
//!
//! The key comes from `TETHER_MASTER_KEY` (base64 or hex of 32 bytes) or a key
//! file created on first start with mode 0600. The database keeps a
//! *key check* (a known text encrypted under the key); opening it with another
//! key fails at once with [`StoreError::WrongKey`], never with garbage later.

use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::StoreError;

pub const MASTER_KEY_ENV: &str = "TETHER_MASTER_KEY";
const KEY_CHECK_TEXT: &[u8] = b"tether master key check v1";

/// The master key, zeroed on drop.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Where the master key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    Created(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => write!(f, "the {MASTER_KEY_ENV} environment variable"),
            KeySource::File(p) => write!(f, "the key file {}", p.display()),
            KeySource::Created(p) => write!(f, "the new key file {}", p.display()),
        }
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(SecretBox::new(Box::new(bytes)))
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Parses base64 (standard or URL-safe) or hex of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .ok()
        };
        let bytes: [u8; 32] = decoded.and_then(|v| v.try_into().ok()).ok_or_else(|| {
            StoreError::BadKey(
                "a master key must be 32 bytes, written as base64 or as 64 hex digits (make one with `openssl rand -base64 32`)".into(),
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key from `TETHER_MASTER_KEY`, else from `key_file`, else a new key
    /// written to `key_file` with mode 0600.
    pub fn load_or_create(key_file: &Path) -> Result<(Self, KeySource), StoreError> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return Ok((Self::parse(&text)?, KeySource::Env));
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => {
                refuse_shared_key_file(key_file)?;
                let key = Self::parse(&text).map_err(|e| match e {
                    StoreError::BadKey(m) => {
                        StoreError::BadKey(format!("{}: {m}", key_file.display()))
                    }
                    other => other,
                })?;
                Ok((key, KeySource::File(key_file.to_owned())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(key_file, &key.to_base64())?;
                Ok((key, KeySource::Created(key_file.to_owned())))
            }
            Err(e) => Err(StoreError::BadKey(format!(
                "cannot read the key file {}: {e}",
                key_file.display()
            ))),
        }
    }

    fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.expose_secret())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }

    /// Encrypts `plaintext`, bound to `aad`. Returns (nonce, ciphertext).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        (nonce.to_vec(), ciphertext)
    }

    /// Decrypts, or `None` when the key, nonce, data or `aad` do not match.
    pub fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != 24 {
            return None;
        }
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }

    /// [`MasterKey::seal`] of a text secret.
    pub fn seal_secret(&self, secret: &SecretString, aad: &[u8]) -> (Vec<u8>, Vec<u8>) {
        self.seal(secret.expose_secret().as_bytes(), aad)
    }

    /// [`MasterKey::open`] of a text secret sealed by
    /// [`MasterKey::seal_secret`]: `None` when it does not decrypt or is not
    /// UTF-8.
    pub fn open_secret(&self, nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Option<SecretString> {
        let clear = self.open(nonce, ciphertext, aad)?;
        String::from_utf8(clear).ok().map(SecretString::from)
    }

    /// A blob (nonce ‖ ciphertext) proving which key a database was made with.
    pub(crate) fn key_check(&self) -> Vec<u8> {
        let (mut nonce, ct) = self.seal(KEY_CHECK_TEXT, b"key-check");
        nonce.extend(ct);
        nonce
    }

    pub(crate) fn verify_key_check(&self, blob: &[u8]) -> bool {
        blob.len() > 24
            && self.open(&blob[..24], &blob[24..], b"key-check").as_deref() == Some(KEY_CHECK_TEXT)
    }
}

/// Refuses a key file that its group or others may read or write: the key
/// decrypts every stored credential.
fn refuse_shared_key_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| {
                StoreError::BadKey(format!("cannot read the key file {}: {e}", path.display()))
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(StoreError::BadKey(format!(
                "the key file {} has mode {:04o}: its group or other users can read it, and it decrypts every stored credential. Run `chmod 600 {}` and start again",
                path.display(),
                mode & 0o7777,
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<(), StoreError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        StoreError::BadKey(format!(
            "cannot create the key file {}: {e}",
            path.display()
        ))
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| {
            StoreError::BadKey(format!("cannot write the key file {}: {e}", path.display()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = MasterKey::generate();
        let (nonce, ct) = key.seal(b"gho_secret", b"credential:1");
        assert_eq!(
            key.open(&nonce, &ct, b"credential:1").unwrap(),
            b"gho_secret"
        );
        assert!(key.open(&nonce, &ct, b"credential:2").is_none());
        assert!(MasterKey::generate()
            .open(&nonce, &ct, b"credential:1")
            .is_none());
        assert!(!ct.windows(10).any(|w| w == b"gho_secret"));
    }

    #[test]
    fn parses_hex_and_base64_and_rejects_short_keys() {
        let hex = "00".repeat(32);
        assert!(MasterKey::parse(&hex).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(MasterKey::parse(&b64).is_ok());
        assert!(matches!(
            MasterKey::parse("c2hvcnQ="),
            Err(StoreError::BadKey(_))
        ));
    }

    #[test]
    #[cfg(unix)]
    fn a_key_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.key");
        let (key, _) = MasterKey::load_or_create(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let Err(StoreError::BadKey(message)) = MasterKey::load_or_create(&path) else {
                panic!("mode {mode:o} was accepted");
            };
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
            assert!(message.contains(&format!("mode 0{mode:o}")), "{message}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let (again, _) = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(again.to_base64(), key.to_base64());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.key");
        std::env::remove_var(MASTER_KEY_ENV);
        let (k1, src) = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(src, KeySource::Created(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, src) = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(src, KeySource::File(path));
        assert!(k2.verify_key_check(&k1.key_check()));
    }
}
