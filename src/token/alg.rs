//! The JWS signature algorithms the proxy verifies (RFC 7518 section 3 and
//! RFC 8037 for EdDSA), what key each needs, and the aws-lc-rs verification
//! parameters behind each. `none` and the HMAC algorithms (HS256/384/512)
//! are never accepted, whatever the config says: an unsigned token proves
//! nothing, and a proxy that holds no shared secret would, for HS*, have to
//! use a public key as the secret, which anyone can do (the classic
//! "HS256 signed with the RSA public key" forgery).

use std::fmt;

use aws_lc_rs::signature::{self, VerificationAlgorithm};

/// A signature algorithm, as named in a JWS header's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

/// The kind of key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        })
    }
}

// The verification parameters as statics, so that each has the 'static
// address aws-lc-rs's parsed keys keep.
static RS256: signature::RsaParameters = signature::RSA_PKCS1_2048_8192_SHA256;
static RS384: signature::RsaParameters = signature::RSA_PKCS1_2048_8192_SHA384;
static RS512: signature::RsaParameters = signature::RSA_PKCS1_2048_8192_SHA512;
static PS256: signature::RsaParameters = signature::RSA_PSS_2048_8192_SHA256;
static PS384: signature::RsaParameters = signature::RSA_PSS_2048_8192_SHA384;
static PS512: signature::RsaParameters = signature::RSA_PSS_2048_8192_SHA512;
static ES256: signature::EcdsaVerificationAlgorithm = signature::ECDSA_P256_SHA256_FIXED;
static ES384: signature::EcdsaVerificationAlgorithm = signature::ECDSA_P384_SHA384_FIXED;
static EDDSA: signature::EdDSAParameters = signature::ED25519;

/// Why an algorithm name is refused (in the config or in a token header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlgorithmRefusal {
    /// `none`: an unsigned token.
    Unsigned,
    /// HS256, HS384, HS512.
    Hmac,
    /// Anything else this proxy does not verify.
    Unknown,
}

impl Algorithm {
    /// Every algorithm, in the order the config reference lists them.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    /// What `algorithms` defaults to: what the common issuers sign with
    /// (Kubernetes and GitHub RS256, Google RS256, AWS RS256/ES384).
    pub const DEFAULT: [Algorithm; 7] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    /// The algorithm named `name` (case-sensitive, as JWS names are).
    pub fn parse(name: &str) -> Result<Algorithm, AlgorithmRefusal> {
        Ok(match name {
            "RS256" => Algorithm::Rs256,
            "RS384" => Algorithm::Rs384,
            "RS512" => Algorithm::Rs512,
            "PS256" => Algorithm::Ps256,
            "PS384" => Algorithm::Ps384,
            "PS512" => Algorithm::Ps512,
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            "EdDSA" => Algorithm::EdDsa,
            _ if name.eq_ignore_ascii_case("none") => return Err(AlgorithmRefusal::Unsigned),
            _ if name.len() == 5 && name[..2].eq_ignore_ascii_case("HS") => {
                return Err(AlgorithmRefusal::Hmac)
            }
            _ => return Err(AlgorithmRefusal::Unknown),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The key an algorithm verifies with: RS and PS take RSA keys, ES256
    /// P-256, ES384 P-384, EdDSA Ed25519 (the only OKP curve supported).
    pub fn key_kind(self) -> KeyKind {
        match self {
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512 => KeyKind::Rsa,
            Algorithm::Es256 => KeyKind::EcP256,
            Algorithm::Es384 => KeyKind::EcP384,
            Algorithm::EdDsa => KeyKind::Ed25519,
        }
    }

    /// The RSA parameters of an RS or PS algorithm (moduli of 2048 to 8192
    /// bits); `None` for the others.
    pub(super) fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Algorithm::Rs256 => &RS256,
            Algorithm::Rs384 => &RS384,
            Algorithm::Rs512 => &RS512,
            Algorithm::Ps256 => &PS256,
            Algorithm::Ps384 => &PS384,
            Algorithm::Ps512 => &PS512,
            _ => return None,
        })
    }

    /// The aws-lc-rs verification algorithm. ECDSA signatures in a JWS are
    /// the fixed-width r || s form (RFC 7518 section 3.4), not DER.
    pub(super) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Algorithm::Rs256 => &RS256,
            Algorithm::Rs384 => &RS384,
            Algorithm::Rs512 => &RS512,
            Algorithm::Ps256 => &PS256,
            Algorithm::Ps384 => &PS384,
            Algorithm::Ps512 => &PS512,
            Algorithm::Es256 => &ES256,
            Algorithm::Es384 => &ES384,
            Algorithm::EdDsa => &EDDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refusals_are_told_apart() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::parse(alg.name()), Ok(alg));
        }
        assert_eq!(Algorithm::parse("none"), Err(AlgorithmRefusal::Unsigned));
        assert_eq!(Algorithm::parse("None"), Err(AlgorithmRefusal::Unsigned));
        for hs in ["HS256", "HS384", "HS512", "hs256"] {
            assert_eq!(Algorithm::parse(hs), Err(AlgorithmRefusal::Hmac), "{hs}");
        }
        for unknown in ["rs256", "ES512", "RSA-OAEP", "", "EdDSA "] {
            assert_eq!(
                Algorithm::parse(unknown),
                Err(AlgorithmRefusal::Unknown),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn each_algorithm_fits_one_key_kind() {
        assert_eq!(Algorithm::Ps384.key_kind(), KeyKind::Rsa);
        assert_eq!(Algorithm::Es256.key_kind(), KeyKind::EcP256);
        assert_eq!(Algorithm::Es384.key_kind(), KeyKind::EcP384);
        assert_eq!(Algorithm::EdDsa.key_kind(), KeyKind::Ed25519);
        assert!(Algorithm::Es256.rsa_parameters().is_none());
        assert!(Algorithm::Rs512.rsa_parameters().is_some());
        // Not in the default: PS384 and PS512 (rarely used), on request.
        assert!(!Algorithm::DEFAULT.contains(&Algorithm::Ps512));
    }
}
