//! Subject mappings between accounts: an import's `from` subject (in the exporter's space) and
//! its `to` (in the importer's), as nats-server's strict subject transforms map them.
//!
//! The wildcards of `from` are numbered left to right (`*` ... and a trailing `>`); `to` refers
//! to them as `$1`, `{{wildcard(1)}}`, or positionally with `*` and `>` in the same order. Every
//! wildcard of `from` must be used exactly once, so the mapping can be reversed: a stream
//! import's shadow subscription maps a subscriber's subject back into the exporter's space.
//!
//! Subjects given to [`Transform::apply`] may themselves contain wildcards (a subscription's
//! subject): a `*` captured by a wildcard stays a `*`.

/// One token of the source pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum From {
    Literal(String),
    /// The n-th wildcard (0-based): `*`, or `>` when it is the last token.
    Wildcard(usize),
    Rest(usize),
}

/// One token of the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
enum To {
    Literal(String),
    /// What the n-th wildcard of the source captured.
    Captured(usize),
}

/// A mapping from subjects matching one pattern to subjects of another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transform {
    from: Vec<From>,
    to: Vec<To>,
    /// Whether the source ends in `>` (so the destination ends with what it captured).
    rest: bool,
}

impl Transform {
    /// The mapping from `from` to `to`, or why it is not one.
    pub(crate) fn new(from: &str, to: &str) -> Result<Self, String> {
        let mut wildcards = 0;
        let from_tokens: Vec<&str> = from.split('.').collect();
        let mut source = Vec::with_capacity(from_tokens.len());
        let mut rest = false;
        for (i, t) in from_tokens.iter().enumerate() {
            source.push(match *t {
                "*" => {
                    wildcards += 1;
                    From::Wildcard(wildcards - 1)
                }
                ">" if i + 1 == from_tokens.len() => {
                    wildcards += 1;
                    rest = true;
                    From::Rest(wildcards - 1)
                }
                ">" => return Err(format!("invalid subject {from:?}")),
                "" => return Err(format!("invalid subject {from:?}")),
                lit => From::Literal(lit.to_string()),
            });
        }
        let mut used = vec![false; wildcards];
        let mut positional = 0;
        let mut dest = Vec::new();
        let to_tokens: Vec<&str> = to.split('.').collect();
        for (i, t) in to_tokens.iter().enumerate() {
            let n = match *t {
                "*" | ">" => {
                    if *t == ">" && (i + 1 != to_tokens.len() || !rest) {
                        return Err(format!("{to:?} does not fit {from:?}"));
                    }
                    positional += 1;
                    Some(positional)
                }
                "" => return Err(format!("invalid subject {to:?}")),
                t => reference(t)?,
            };
            if *t == "*" && rest && n == Some(wildcards) {
                return Err(format!("{to:?} maps the '>' of {from:?} to a '*'"));
            }
            match n {
                Some(n) if n >= 1 && n <= wildcards => {
                    if std::mem::replace(&mut used[n - 1], true) {
                        return Err(format!("wildcard {n} of {from:?} used twice in {to:?}"));
                    }
                    dest.push(To::Captured(n - 1));
                }
                Some(n) => {
                    return Err(format!(
                        "{to:?} refers to wildcard {n}, {from:?} has {wildcards}"
                    ))
                }
                None => dest.push(To::Literal((*t).to_string())),
            }
        }
        if used.iter().any(|u| !u) {
            return Err(format!("{to:?} does not use every wildcard of {from:?}"));
        }
        if rest && dest.last() != Some(&To::Captured(wildcards - 1)) {
            return Err(format!("{to:?} must end with the '>' of {from:?}"));
        }
        Ok(Self {
            from: source,
            to: dest,
            rest,
        })
    }

    /// `subject` mapped, or `None` if it does not match the source pattern.
    pub(crate) fn apply(&self, subject: &str) -> Option<String> {
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut captured: Vec<String> = Vec::new();
        let mut i = 0;
        for f in &self.from {
            match f {
                From::Literal(l) => {
                    if tokens.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                    i += 1;
                }
                From::Wildcard(_) => {
                    let t = tokens.get(i)?;
                    if *t == ">" {
                        return None;
                    }
                    captured.push((*t).to_string());
                    i += 1;
                }
                From::Rest(_) => {
                    if i >= tokens.len() {
                        return None;
                    }
                    captured.push(tokens[i..].join("."));
                    i = tokens.len();
                }
            }
        }
        if i != tokens.len() {
            return None;
        }
        let out: Vec<&str> = self
            .to
            .iter()
            .map(|t| match t {
                To::Literal(l) => l.as_str(),
                To::Captured(n) => captured[*n].as_str(),
            })
            .collect();
        Some(out.join("."))
    }

    /// The mapping back (destination to source).
    pub(crate) fn reverse(&self) -> Self {
        // order[k]: the source wildcard that the k-th capture of the destination carries.
        let mut order = Vec::new();
        let last = self.to.len() - 1;
        let from = self
            .to
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                To::Literal(l) => From::Literal(l.clone()),
                To::Captured(n) => {
                    order.push(*n);
                    let k = order.len() - 1;
                    // `new` made sure a `>` of the source is the destination's last token.
                    if self.rest && i == last {
                        From::Rest(k)
                    } else {
                        From::Wildcard(k)
                    }
                }
            })
            .collect();
        let to = self
            .from
            .iter()
            .map(|f| match f {
                From::Literal(l) => To::Literal(l.clone()),
                From::Wildcard(n) | From::Rest(n) => {
                    To::Captured(order.iter().position(|o| o == n).unwrap_or(0))
                }
            })
            .collect();
        Self {
            from,
            to,
            rest: self.rest,
        }
    }
}

/// `$N` or `{{wildcard(N)}}`: the wildcard number, `None` for a literal token.
fn reference(token: &str) -> Result<Option<usize>, String> {
    let number = if let Some(n) = token.strip_prefix('$') {
        n
    } else if let Some(inner) = token.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
        let inner = inner.trim();
        match inner
            .strip_prefix("wildcard(")
            .and_then(|t| t.strip_suffix(')'))
        {
            Some(n) => n.trim(),
            None => return Err(format!("unsupported mapping function {token:?}")),
        }
    } else {
        return Ok(None);
    };
    number
        .parse()
        .map(Some)
        .map_err(|_| format!("invalid wildcard reference {token:?}"))
}

/// Whether every subject `a` matches is also matched by `b` (both may contain wildcards).
pub(crate) fn is_subset(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for (i, tb) in b.iter().enumerate() {
        let Some(ta) = a.get(i) else {
            return false;
        };
        match *tb {
            ">" => return true,
            "*" if *ta != ">" => {}
            "*" => return false,
            lit if lit == *ta => {}
            _ => return false,
        }
    }
    a.len() == b.len()
}

/// The subjects `a` and `b` have in common as one pattern, if they overlap (the narrower token
/// at each position).
pub(crate) fn intersection(a: &str, b: &str) -> Option<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (None, None) => break,
            // `>` stands for one token or more, so it meets nothing past the other's end.
            (Some(&">"), Some(_)) => {
                out.extend(b[i..].iter().copied());
                break;
            }
            (Some(_), Some(&">")) => {
                out.extend(a[i..].iter().copied());
                break;
            }
            (Some(x), Some(y)) => {
                out.push(match (*x, *y) {
                    ("*", t) | (t, "*") => t,
                    (x, y) if x == y => x,
                    _ => return None,
                });
            }
            _ => return None,
        }
        i += 1;
    }
    if out.is_empty() {
        None
    } else {
        Some(out.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_and_numbered_references() {
        let t = Transform::new("orders.*.>", "shop.orders.*.>").unwrap();
        assert_eq!(
            t.apply("orders.eu.new.1").as_deref(),
            Some("shop.orders.eu.new.1")
        );
        assert_eq!(t.apply("orders.eu").as_deref(), None);
        assert_eq!(t.apply("other.eu.x"), None);
        let t = Transform::new("a.*.*", "b.$2.$1").unwrap();
        assert_eq!(t.apply("a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(t.reverse().apply("b.y.x").as_deref(), Some("a.x.y"));
        let t = Transform::new("a.*", "b.{{wildcard(1)}}").unwrap();
        assert_eq!(t.apply("a.q").as_deref(), Some("b.q"));
        // Patterns map too: a subscriber's wildcards stay wildcards.
        let t = Transform::new("orders.>", "p.orders.>").unwrap();
        assert_eq!(t.reverse().apply("p.orders.*").as_deref(), Some("orders.*"));
        assert_eq!(t.reverse().apply("p.orders.>").as_deref(), Some("orders.>"));
    }

    #[test]
    fn mappings_that_lose_a_wildcard_are_refused() {
        assert!(Transform::new("a.*.*", "b.$1").is_err());
        assert!(Transform::new("a.*", "b.$1.$1").is_err());
        assert!(Transform::new("a.*", "b.$2").is_err());
        assert!(Transform::new("a.>", "b.*").is_err());
        assert!(Transform::new("a.*", "b.{{partition(3)}}").is_err());
    }

    #[test]
    fn subsets_and_intersections() {
        assert!(is_subset("a.b", "a.*"));
        assert!(is_subset("a.b.c", "a.>"));
        assert!(is_subset("a.*", "a.>"));
        assert!(!is_subset("a.>", "a.*"));
        assert!(!is_subset("a.*", "a.b"));
        assert!(is_subset("a.b", "a.b"));
        assert_eq!(intersection("a.*", "a.b").as_deref(), Some("a.b"));
        assert_eq!(intersection(">", "x.*").as_deref(), Some("x.*"));
        assert_eq!(intersection("a.*.c", "a.b.>").as_deref(), Some("a.b.c"));
        assert_eq!(intersection("a.b", "a.c"), None);
        // A trailing `>` needs a token: found by accounts_model's proptest.
        assert_eq!(intersection("*.p0.*.>", "p0.*.b"), None);
        assert_eq!(intersection("p0.*.b", "*.p0.*.>"), None);
        assert_eq!(intersection("a.>", "a.b.>").as_deref(), Some("a.b.>"));
    }
}
