//! Test certificates, generated per test run with rcgen: a CA, a server certificate for
//! `localhost` and 127.0.0.1, and a client certificate, as PEM files in a fresh directory.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// PEM files: `ca.pem`, `server-cert.pem`, `server-key.pem`, `client-cert.pem`,
/// `client-key.pem`.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// A new CA with a server and a client certificate in a directory of its own.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "starling-certs-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Self { dir };
        certs.issue("Starling Test CA");
        certs
    }

    /// Replaces every file with certificates from a new CA named `ca_name`.
    pub fn issue(&self, ca_name: &str) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        self.write("ca.pem", &ca_cert.pem());

        let leaf = |names: Vec<String>, cn: &str, usages: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (cert, key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            // Routes present the server certificate as a client too.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        self.write("server-cert.pem", &cert);
        self.write("server-key.pem", &key);
        let (cert, key) = leaf(
            vec!["client.starling.test".into()],
            "client",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        self.write("client-cert.pem", &cert);
        self.write("client-key.pem", &key);
    }

    fn write(&self, name: &str, pem: &str) {
        // Write then rename, so a server reading the file never sees half of it.
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, self.dir.join(name)).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server's TLS settings: its certificate and key, and the CA for client certificates.
    pub fn server(&self) -> starling_server::TlsConfig {
        starling_server::TlsConfig::new(self.path("server-cert.pem"), self.path("server-key.pem"))
            .ca_file(self.ca())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
