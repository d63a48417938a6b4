//! The Simple Paged Results control (RFC 2696), read without trusting the
//! server: its answer's value is decoded here, with an error (never a
//! panic) for a malformed one.
//!
//! RFC 2696 section 2: the control's value is
//! `realSearchControlValue ::= SEQUENCE { size INTEGER (0..maxInt),
//! cookie OCTET STRING }`, BER-encoded (RFC 4511 section 5.1: definite
//! lengths).

/// The control's OID (RFC 2696 section 2).
pub const OID: &str = "1.2.840.113556.1.4.319";

/// Reads one BER tag-length-value: (tag, value, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        // Indefinite lengths (0x80) are not allowed in LDAP; more than four
        // length bytes is no control value we would accept.
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The cookie of a paged-results answer: empty when the listing is done.
pub fn decode_cookie(value: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |what: &str| format!("the server's paged results control is malformed ({what})");
    let (tag, seq, _) = tlv(value).ok_or_else(|| bad("truncated"))?;
    if tag != 0x30 {
        return Err(bad("not a SEQUENCE"));
    }
    let (tag, _size, rest) = tlv(seq).ok_or_else(|| bad("no size"))?;
    if tag != 0x02 {
        return Err(bad("the size is not an INTEGER"));
    }
    let (tag, cookie, _) = tlv(rest).ok_or_else(|| bad("no cookie"))?;
    if tag != 0x04 {
        return Err(bad("the cookie is not an OCTET STRING"));
    }
    Ok(cookie.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_ldap3_writes() {
        for cookie in [vec![], b"abc".to_vec(), vec![7u8; 300]] {
            let raw: ldap3::controls::RawControl = ldap3::controls::PagedResults {
                size: 5,
                cookie: cookie.clone(),
            }
            .into();
            assert_eq!(raw.ctype, OID);
            assert_eq!(decode_cookie(&raw.val.unwrap()).unwrap(), cookie);
        }
    }

    #[test]
    fn malformed_values_are_errors() {
        for v in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x02, 0x01],
            &[0x31, 0x03, 0x02, 0x01, 0x00],
            &[0x30, 0x03, 0x02, 0x01, 0x00],
            &[0x30, 0x80, 0x02, 0x01, 0x00, 0x04, 0x00],
            &[0x30, 0x05, 0x02, 0x01, 0x00, 0x05, 0x00],
        ] {
            assert!(decode_cookie(v).is_err(), "{v:?}");
        }
    }
}
