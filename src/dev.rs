//! `temporal-mtls-proxy dev`: a development PKI made with rcgen (a CA, a
//! server certificate for localhost and 127.0.0.1, a client certificate) and
//! a config that uses it, so the proxy runs in front of a local Temporal dev
//! server with one command. Development only: the CA key is written next to
//! the certificates. The folder is owner-only (0700) and the keys 0600 on
//! Unix, also when an existing PKI is reused.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

/// Files of the development PKI.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

impl DevPki {
    fn at(dir: &Path) -> DevPki {
        DevPki {
            dir: dir.to_owned(),
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    fn complete(&self) -> bool {
        [
            &self.ca,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
        ]
        .iter()
        .all(|p| p.is_file())
    }

    /// Uses the PKI in `dir` if it is complete and still valid for a day,
    /// else makes a new one. Paths are absolute, so the printed commands
    /// work from any directory.
    pub fn ensure(dir: &Path) -> Result<DevPki, DevError> {
        std::fs::create_dir_all(dir).map_err(|source| DevError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let dir = std::fs::canonicalize(dir).map_err(|source| DevError::Write {
            path: dir.to_owned(),
            source,
        })?;
        // Owner only: the folder holds private keys (the CA's among them).
        // A folder or keys left readable by others (an older version wrote
        // them 0755/0644) are tightened too.
        restrict(&dir, 0o700)?;
        let pki = DevPki::at(&dir);
        for key in pki.keys() {
            if key.exists() {
                restrict(&key, 0o600)?;
            }
        }
        if pki.complete() && pki.still_valid() {
            return Ok(pki);
        }
        pki.generate()?;
        Ok(pki)
    }

    /// The private keys: the CA's, the server's and the client's.
    fn keys(&self) -> [PathBuf; 3] {
        [
            self.dir.join("ca.key"),
            self.server_key.clone(),
            self.client_key.clone(),
        ]
    }

    fn still_valid(&self) -> bool {
        let tomorrow =
            x509_parser::time::ASN1Time::from(OffsetDateTime::now_utc() + Duration::days(1));
        [&self.ca, &self.server_cert, &self.client_cert]
            .iter()
            .all(|path| {
                std::fs::read(path)
                    .ok()
                    .and_then(|pem| {
                        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
                        let cert = pem.parse_x509().ok()?;
                        Some(cert.validity().not_after > tomorrow)
                    })
                    .unwrap_or(false)
            })
    }

    fn generate(&self) -> Result<(), DevError> {
        let now = OffsetDateTime::now_utc();
        let validity = |p: &mut CertificateParams| {
            p.not_before = now - Duration::hours(1);
            p.not_after = now + Duration::days(365);
        };

        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name = name("temporal-mtls-proxy dev CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, &ca_key);

        let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        server.distinguished_name = name("localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.use_authority_key_identifier_extension = true;
        validity(&mut server);
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name = name("dev-client");
        client
            .distinguished_name
            .push(DnType::OrganizationName, "temporal-mtls-proxy dev");
        client.subject_alt_names.push(SanType::URI(
            "spiffe://dev.local/ns/default/sa/dev-client".try_into()?,
        ));
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client.use_authority_key_identifier_extension = true;
        validity(&mut client);
        let client_cert = client.signed_by(&client_key, &issuer)?;

        write(&self.ca, &ca_cert.pem())?;
        write_private(&self.dir.join("ca.key"), &ca_key.serialize_pem())?;
        write(&self.server_cert, &server_cert.pem())?;
        write_private(&self.server_key, &server_key.serialize_pem())?;
        write(&self.client_cert, &client_cert.pem())?;
        write_private(&self.client_key, &client_key.serialize_pem())?;
        Ok(())
    }

    /// The config text for the proxy in front of `upstream`.
    pub fn config_toml(&self, listen: &str, upstream: &str) -> String {
        format!(
            "# Written by `temporal-mtls-proxy dev`. Development only.\n\
             [listen]\naddress = \"{listen}\"\n\n\
             # Metrics and probes; port 0 picks a free one (see the log line).\n\
             [admin]\naddress = \"127.0.0.1:0\"\n\n\
             [tls]\ncert = {server_cert:?}\nkey = {server_key:?}\nclient_ca = {ca:?}\n\n\
             [upstream]\naddress = \"{upstream}\"\n\n\
             # Who may call what: the dev client is admin of every namespace.\n\
             [authz]\nmode = \"enforce\"\n\n\
             [[authz.rule]]\nname = \"dev-client-admin\"\nmatch = {{ cn = \"dev-client\" }}\n\
             namespaces = [\"*\"]\nroles = [\"admin\"]\n",
            server_cert = self.server_cert.display().to_string(),
            server_key = self.server_key.display().to_string(),
            ca = self.ca.display().to_string(),
        )
    }

    /// The `temporal` CLI command that goes through the proxy with mTLS.
    pub fn cli_command(&self, listen: &str) -> String {
        format!(
            "temporal operator namespace list --address {listen} --tls-ca-path {} --tls-cert-path {} --tls-key-path {} --tls-server-name localhost",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn write(path: &Path, contents: &str) -> Result<(), DevError> {
    std::fs::write(path, contents).map_err(|source| DevError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes a private key readable by its owner only (0600 on Unix). An
/// existing file is restricted before the new key goes into it, so the key
/// is never readable by others, not even for a moment.
fn write_private(path: &Path, contents: &str) -> Result<(), DevError> {
    use std::io::Write;
    let err = |source| DevError::Write {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        restrict(path, 0o600)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    // `mode` applies only to a file it creates, and the umask may take more
    // away; set exactly 0600.
    restrict(path, 0o600)
}

/// Sets `path`'s permission bits to `mode` (Unix; elsewhere nothing).
fn restrict(path: &Path, mode: u32) -> Result<(), DevError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
            |source| DevError::Write {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_makes_a_config_that_validates() {
        let dir = std::env::temp_dir().join(format!("tmp-dev-pki-{}", std::process::id()));
        let pki = DevPki::ensure(&dir).unwrap();
        let text = pki.config_toml("127.0.0.1:0", "http://127.0.0.1:7233");
        let config = crate::config::Config::from_toml(&text, &dir, "dev").unwrap();
        assert_eq!(config.upstream.port, 7233);
        assert_eq!(config.authz.expect("dev policy").rules.len(), 1);
        // A second call reuses the files.
        let before = std::fs::read(&pki.ca).unwrap();
        DevPki::ensure(&dir).unwrap();
        assert_eq!(before, std::fs::read(&pki.ca).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The private keys are readable by their owner only (0600) and the
    /// folder is closed to others (0700), also when an existing PKI with
    /// looser modes is reused.
    #[cfg(unix)]
    #[test]
    fn dev_pki_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| {
            let bits = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            format!("{bits:o}")
        };
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("dev-pki");
        let pki = DevPki::ensure(&dir).unwrap();
        let keys = [
            pki.dir.join("ca.key"),
            pki.server_key.clone(),
            pki.client_key.clone(),
        ];
        assert_eq!(mode(&pki.dir), "700", "the PKI folder");
        for key in &keys {
            assert_eq!(mode(key), "600", "{}", key.display());
        }

        // A PKI left with world-readable modes (made by an older version)
        // is tightened when it is reused.
        chmod(&pki.dir, 0o755);
        for key in &keys {
            chmod(key, 0o644);
        }
        let before = std::fs::read(&pki.client_key).unwrap();
        let again = DevPki::ensure(&dir).unwrap();
        assert_eq!(before, std::fs::read(&again.client_key).unwrap(), "reused");
        assert_eq!(mode(&again.dir), "700", "the reused PKI folder");
        for key in &keys {
            assert_eq!(mode(key), "600", "reused {}", key.display());
        }

        // And when it is made anew over old files (here: expired or
        // incomplete), the new keys are never readable by others either.
        std::fs::remove_file(&again.ca).unwrap();
        chmod(&pki.dir, 0o755);
        for key in &keys {
            chmod(key, 0o644);
        }
        let fresh = DevPki::ensure(&dir).unwrap();
        assert_ne!(
            before,
            std::fs::read(&fresh.client_key).unwrap(),
            "regenerated"
        );
        assert_eq!(mode(&fresh.dir), "700", "the regenerated PKI folder");
        for key in &keys {
            assert_eq!(mode(key), "600", "regenerated {}", key.display());
        }
    }
}
