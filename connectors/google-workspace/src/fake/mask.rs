//! Google's partial-response field masks (`fields=`)
//! (<https://developers.google.com/workspace/admin/directory/v1/guides/performance#partial>):
//! a comma-separated list of field names, `a/b` for a sub-field and
//! `a(b,c)` for several sub-fields of one field. A response then holds only
//! the fields named (and all of a field named without sub-fields).

/// A parsed mask: `None` selects everything below.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mask(Option<Vec<(String, Mask)>>);

impl Mask {
    /// Everything.
    pub const ALL: Mask = Mask(None);

    /// Parses `fields`; an empty or missing mask selects everything.
    pub fn parse(fields: Option<&str>) -> Result<Mask, String> {
        let Some(text) = fields.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Mask::ALL);
        };
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let m = p.list()?;
        if p.i != p.s.len() {
            return Err(format!("Invalid field selection {text}"));
        }
        Ok(m)
    }

    /// The mask of field `name`, or `None` when it is not selected.
    pub fn get(&self, name: &str) -> Option<&Mask> {
        match &self.0 {
            None => Some(&Mask::ALL),
            Some(v) => v.iter().find(|(n, _)| n == name).map(|(_, m)| m),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The names this mask selects explicitly (`None`: everything).
    pub fn names(&self) -> Option<impl Iterator<Item = &str>> {
        self.0.as_ref().map(|v| v.iter().map(|(n, _)| n.as_str()))
    }

    fn add(&mut self, path: Vec<String>, leaf: Mask) {
        let mut cur = self;
        let n = path.len();
        for (i, seg) in path.into_iter().enumerate() {
            let v = cur.0.get_or_insert_with(Vec::new);
            let pos = match v.iter().position(|(x, _)| *x == seg) {
                Some(p) => p,
                None => {
                    v.push((seg, Mask(Some(Vec::new()))));
                    v.len() - 1
                }
            };
            if i + 1 == n {
                let slot = &mut v[pos].1;
                match (&mut slot.0, leaf.0) {
                    (_, None) => slot.0 = None,
                    (None, Some(_)) => {}
                    (Some(a), Some(b)) => {
                        for (k, m) in b {
                            Mask::add_into(a, k, m);
                        }
                    }
                }
                return;
            }
            cur = &mut v[pos].1;
            if cur.0.is_none() {
                return; // already everything below
            }
        }
    }

    fn add_into(v: &mut Vec<(String, Mask)>, k: String, m: Mask) {
        let mut tmp = Mask(Some(std::mem::take(v)));
        tmp.add(vec![k], m);
        *v = tmp.0.unwrap_or_default();
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn list(&mut self) -> Result<Mask, String> {
        let mut m = Mask(Some(Vec::new()));
        loop {
            let path = self.path()?;
            let leaf = if self.s.get(self.i) == Some(&b'(') {
                self.i += 1;
                let inner = self.list()?;
                if self.s.get(self.i) != Some(&b')') {
                    return Err("Invalid field selection: missing )".into());
                }
                self.i += 1;
                inner
            } else {
                Mask::ALL
            };
            m.add(path, leaf);
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                _ => return Ok(m),
            }
        }
    }

    fn path(&mut self) -> Result<Vec<String>, String> {
        let mut segs = Vec::new();
        loop {
            let start = self.i;
            while self.s.get(self.i).is_some_and(|c| {
                c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$' || *c == b'*'
            }) {
                self.i += 1;
            }
            if start == self.i {
                return Err("Invalid field selection: empty field name".into());
            }
            segs.push(String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
            if self.s.get(self.i) == Some(&b'/') {
                self.i += 1;
            } else {
                return Ok(segs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_select_nested_fields() {
        let m = Mask::parse(Some(
            "nextPageToken,users(id,name/fullName,name(givenName))",
        ))
        .unwrap();
        assert!(m.has("nextPageToken"));
        assert!(!m.has("kind"));
        let users = m.get("users").unwrap();
        assert!(users.has("id"));
        assert!(!users.has("primaryEmail"));
        let name = users.get("name").unwrap();
        assert!(name.has("fullName") && name.has("givenName") && !name.has("familyName"));
        let all = Mask::parse(Some("users")).unwrap();
        assert!(all.get("users").unwrap().has("anything"));
        assert!(Mask::parse(Some("users(id")).is_err());
        assert!(Mask::parse(None).unwrap().has("kind"));
    }
}
