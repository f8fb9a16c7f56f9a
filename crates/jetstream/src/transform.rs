//! Subject transforms as streams use them (`republish`, and later `subject_transform`): a
//! source pattern with wildcards, and a destination that places what they matched, by position
//! (`*`, `>`) or by number (`$1`, `{{wildcard(1)}}`), as nats-server's `SubjectTransform` does for
//! these forms.

/// A transform from subjects matching `src` to `dest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transform {
    src: Vec<String>,
    dest: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The nth (0-based) wildcard of the source.
    Wildcard(usize),
    /// What the source's `>` matched.
    Rest,
}

impl Transform {
    /// A transform, or why it is not one.
    pub(crate) fn new(src: &str, dest: &str) -> Result<Self, String> {
        let src = if src.is_empty() { ">" } else { src };
        if !starling_sublist::is_valid_subject(src.as_bytes()) {
            return Err(format!("invalid source subject {src:?}"));
        }
        let src: Vec<String> = src.split('.').map(str::to_string).collect();
        let stars = src.iter().filter(|t| *t == "*").count();
        let has_rest = src.last().is_some_and(|t| t == ">");
        let mut next_star = 0;
        let mut dest_parts = Vec::new();
        for token in dest.split('.') {
            let part = if token == "*" {
                next_star += 1;
                if next_star > stars {
                    return Err("the destination has more wildcards than the source".into());
                }
                Part::Wildcard(next_star - 1)
            } else if token == ">" {
                if !has_rest {
                    return Err("the destination has '>' and the source does not".into());
                }
                Part::Rest
            } else if let Some(n) = numbered(token) {
                if n == 0 || n > stars {
                    return Err(format!("no wildcard {n} in the source"));
                }
                Part::Wildcard(n - 1)
            } else if token.is_empty() {
                return Err("empty token in the destination".into());
            } else {
                Part::Literal(token.to_string())
            };
            dest_parts.push(part);
        }
        Ok(Self {
            src,
            dest: dest_parts,
        })
    }

    /// `subject` transformed, or `None` when it does not match the source.
    pub(crate) fn apply(&self, subject: &str) -> Option<String> {
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut stars = Vec::new();
        let mut rest = None;
        for (i, pattern) in self.src.iter().enumerate() {
            match pattern.as_str() {
                ">" => {
                    if i >= tokens.len() {
                        return None;
                    }
                    rest = Some(tokens[i..].join("."));
                    break;
                }
                "*" => stars.push(*tokens.get(i)?),
                literal => {
                    if tokens.get(i) != Some(&literal) {
                        return None;
                    }
                }
            }
            if i + 1 == self.src.len() && tokens.len() != self.src.len() {
                return None;
            }
        }
        let parts: Vec<String> = self
            .dest
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.clone(),
                Part::Wildcard(n) => stars.get(*n).map(|s| s.to_string()).unwrap_or_default(),
                Part::Rest => rest.clone().unwrap_or_default(),
            })
            .collect();
        Some(parts.join("."))
    }
}

/// `$N` or `{{wildcard(N)}}` (spaces allowed inside the braces).
fn numbered(token: &str) -> Option<usize> {
    if let Some(n) = token.strip_prefix('$') {
        return n.parse().ok();
    }
    let inner = token.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let n = inner.strip_prefix("wildcard(")?.strip_suffix(')')?.trim();
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_by_position_and_by_number() {
        let t = Transform::new("orders.*.*", "shipped.$2.{{wildcard(1)}}").unwrap();
        assert_eq!(t.apply("orders.eu.42").as_deref(), Some("shipped.42.eu"));
        assert_eq!(t.apply("orders.eu"), None);
        assert_eq!(t.apply("orders.eu.42.x"), None);
        let t = Transform::new(">", "repub.>").unwrap();
        assert_eq!(t.apply("a.b").as_deref(), Some("repub.a.b"));
        let t = Transform::new("kv.*", "out.*").unwrap();
        assert_eq!(t.apply("kv.k").as_deref(), Some("out.k"));
        assert_eq!(t.apply("other.k"), None);
        assert!(Transform::new("a.*", "b.$2").is_err());
        assert!(Transform::new("a.*", "b.>").is_err());
    }
}
