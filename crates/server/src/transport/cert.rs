//! What a client certificate says about its holder, read as nats-server reads it: the names
//! `verify_and_map` maps to a user, and the key `pinned_certs` pins.
//!
//! The subject's string forms follow Go's `crypto/x509/pkix` (`Name.ToRDNSequence().String()`,
//! which keeps only the well-known attributes in a fixed order) and go-ldap's
//! `FromRawCertSubject` (every attribute, in RFC 2253 order), since nats-server's users are
//! named in those forms.

use x509_parser::prelude::*;

/// An attribute of a distinguished name: its type (`CN`, `O`, ... or a dotted OID) and value.
pub(crate) type Attribute = (String, String);
/// A distinguished name: relative distinguished names, each one or more attributes.
pub(crate) type Dn = Vec<Vec<Attribute>>;

/// The names a certificate gives its holder.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) emails: Vec<String>,
    pub(crate) dns_names: Vec<String>,
    pub(crate) uris: Vec<String>,
    /// The subject in go-ldap's order (most specific first, as written: `CN=..,O=..`).
    pub(crate) dn: Dn,
    /// Go's `pkix.Name` string of the subject (known attributes only).
    pub(crate) rdn: String,
    /// The subject's `DC` attributes, as `DC=a,DC=b` (nats-server appends them to `rdn`).
    pub(crate) dcs: String,
}

// Attribute type OIDs (RFC 4519) and the short names Go and go-ldap print for them.
const NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.17", "POSTALCODE"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// Go's `ToRDNSequence` order; its string prints it reversed.
const GO_ORDER: &[&str] = &[
    "C",
    "ST",
    "L",
    "STREET",
    "POSTALCODE",
    "O",
    "OU",
    "CN",
    "SERIALNUMBER",
];

fn type_name(oid: &str) -> String {
    NAMES
        .iter()
        .find(|(o, _)| *o == oid)
        .map_or_else(|| oid.to_string(), |(_, n)| n.to_string())
}

/// The identity in a DER certificate, or `None` if it does not parse.
pub(crate) fn identity(der: &[u8]) -> Option<Identity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut id = Identity::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(e) => id.emails.push(e.to_string()),
                GeneralName::DNSName(d) => id.dns_names.push(d.to_string()),
                GeneralName::URI(u) => id.uris.push(u.to_string()),
                _ => {}
            }
        }
    }
    // The subject in ASN.1 order (least specific first).
    let mut asn1: Dn = Vec::new();
    for rdn in cert.subject().iter() {
        let mut attrs = Vec::new();
        for atv in rdn.iter() {
            let value = atv.as_str().map(str::to_string).unwrap_or_default();
            attrs.push((type_name(&atv.attr_type().to_id_string()), value));
        }
        asn1.push(attrs);
    }
    id.dn = asn1.iter().rev().cloned().collect();
    let all: Vec<&Attribute> = asn1.iter().flatten().collect();
    // Go groups each well-known attribute's values into one RDN, in its fixed order.
    let mut go: Vec<String> = Vec::new();
    for kind in GO_ORDER {
        let values: Vec<String> = all
            .iter()
            .filter(|(t, _)| t == kind)
            .map(|(t, v)| format!("{t}={}", escape(v)))
            .collect();
        if !values.is_empty() {
            go.push(values.join("+"));
        }
    }
    go.reverse();
    id.rdn = go.join(",");
    id.dcs = all
        .iter()
        .filter(|(t, _)| t == "DC")
        .map(|(_, v)| format!("DC={}", escape(v)))
        .collect::<Vec<_>>()
        .join(",");
    Some(id)
}

/// Go's escaping of an attribute value in a DN string.
fn escape(v: &str) -> String {
    let n = v.chars().count();
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let needs = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => i == 0 || i + 1 == n,
            '#' => i == 0,
            _ => false,
        };
        if needs {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A user name as an LDAP DN (`CN=alice,OU=ops`, `+` joining attributes of one RDN), or
/// `None` if it is not one.
pub(crate) fn parse_dn(s: &str) -> Option<Dn> {
    let mut dn = Vec::new();
    for rdn in split_unescaped(s, ',') {
        let mut attrs = Vec::new();
        for atv in split_unescaped(&rdn, '+') {
            let (t, v) = atv.split_once('=')?;
            let t = t.trim();
            if t.is_empty() {
                return None;
            }
            attrs.push((t.to_ascii_uppercase(), unescape(v.trim())));
        }
        dn.push(attrs);
    }
    (!dn.is_empty()).then_some(dn)
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            parts.last_mut().expect("one part").push(c);
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            parts.last_mut().expect("one part").push(c);
        } else if c == sep {
            parts.push(String::new());
        } else {
            parts.last_mut().expect("one part").push(c);
        }
    }
    parts
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// go-ldap's `DN.Equal` (same RDNs in the same order; attributes of an RDN in any order,
/// types case-insensitive) or, with `reordered`, `RDNsMatch` (the same RDNs in any order).
pub(crate) fn dn_matches(user: &Dn, cert: &Dn, reordered: bool) -> bool {
    let rdn_eq = |a: &Vec<Attribute>, b: &Vec<Attribute>| {
        a.len() == b.len()
            && a.iter().all(|(t, v)| {
                b.iter()
                    .any(|(t2, v2)| t.eq_ignore_ascii_case(t2) && v == v2)
            })
    };
    if user.len() != cert.len() {
        return false;
    }
    if reordered {
        user.iter().all(|u| cert.iter().any(|c| rdn_eq(u, c)))
    } else {
        user.iter().zip(cert).all(|(u, c)| rdn_eq(u, c))
    }
}

/// nats-server's pinned-certificate id: the hex SHA-256 of the certificate's
/// SubjectPublicKeyInfo.
pub(crate) fn spki_sha256(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    Some(data_encoding::HEXLOWER.encode(digest.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &[(rcgen::DnType, &str)], sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        for (t, v) in subject {
            dn.push(t.clone(), *v);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subjects_print_as_go_prints_them() {
        use rcgen::DnType::*;
        let der = cert(
            &[
                (CountryName, "US"),
                (OrganizationName, "Synadia"),
                (OrganizationalUnitName, "NATS.io"),
                (CommonName, "example.com"),
                (CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]), "io"),
            ],
            vec![
                rcgen::SanType::Rfc822Name("derek@nats.io".try_into().unwrap()),
                rcgen::SanType::DnsName("app.nats.io".try_into().unwrap()),
            ],
        );
        let id = identity(&der).unwrap();
        assert_eq!(id.emails, ["derek@nats.io"]);
        assert_eq!(id.dns_names, ["app.nats.io"]);
        assert_eq!(id.rdn, "CN=example.com,OU=NATS.io,O=Synadia,C=US");
        assert_eq!(id.dcs, "DC=io");
        let user = parse_dn("DC=io, CN=example.com,OU=NATS.io,O=Synadia,C=US").unwrap();
        assert!(dn_matches(&user, &id.dn, false));
        let reordered = parse_dn("C=US,O=Synadia,OU=NATS.io,CN=example.com,DC=io").unwrap();
        assert!(!dn_matches(&reordered, &id.dn, false));
        assert!(dn_matches(&reordered, &id.dn, true));
        assert!(!dn_matches(&parse_dn("CN=other").unwrap(), &id.dn, true));
        assert_eq!(escape("a,b "), "a\\,b\\ ");
        assert_eq!(
            parse_dn("CN=a\\,b").unwrap(),
            vec![vec![("CN".into(), "a,b".into())]]
        );
        assert_eq!(parse_dn("not a dn"), None);
        assert_eq!(spki_sha256(&der).unwrap().len(), 64);
    }
}
