//! DKIM (SPEC §12): the key of `--dkim-key`, read and checked once at start-up, and the
//! signer every outgoing message passes through. lettre does the signing (RFC 6376,
//! relaxed/relaxed, RSA-SHA256 or Ed25519-SHA256); this module reads keys, keeps one
//! parsed signing configuration per signing domain, and makes new keys for
//! `mailtrail dkim keygen`.
//!
//! Key files: RSA as PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`, what keygen writes) or PKCS#8
//! (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes); Ed25519 as the base64 of its
//! 32-byte seed on one line (what keygen and dkimpy's `dknewkey` write) or PKCS#8 PEM.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use std::sync::{Arc, Mutex};

/// Headers signed, in this order (SPEC §12 names the first seven). A header that a
/// message lacks (Cc, Reply-To) is signed as absent, so nobody can add it on the way.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Cc",
    "Reply-To",
];

/// The two algorithms of SPEC §12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// RSA-SHA256 with a 2048-bit key.
    Rsa,
    /// Ed25519-SHA256 (RFC 8463).
    Ed25519,
}

impl Algorithm {
    /// The `k=` tag of the DNS record.
    pub fn dns_name(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    fn lettre(self) -> DkimSigningAlgorithm {
        match self {
            Algorithm::Rsa => DkimSigningAlgorithm::Rsa,
            Algorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
        }
    }
}

/// Why a key, a selector or a signature could not be had; each says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// A `BEGIN RSA PRIVATE KEY` file that does not parse.
    #[error("not a readable RSA private key (PKCS#1 PEM): {0}")]
    Pkcs1(rsa::pkcs1::Error),
    /// A `BEGIN PRIVATE KEY` file of another algorithm.
    #[error("a PKCS#8 PEM key that is neither RSA nor Ed25519")]
    OtherPkcs8,
    /// An RSA key shorter than RFC 8301 allows.
    #[error("the RSA key has {bits} bits; DKIM needs at least {MIN_RSA_BITS} (2048 recommended)")]
    ShortRsa {
        /// The key's size.
        bits: usize,
    },
    /// Neither PEM nor base64.
    #[error("not a DKIM private key: expected an RSA PEM key or the base64 of an Ed25519 seed")]
    NotAKey,
    /// Base64 of something else than a 32-byte seed.
    #[error("an Ed25519 key is the base64 of 32 bytes; this file holds {0} bytes")]
    SeedLength(usize),
    /// Not dot-separated DNS labels (RFC 6376 §3.1).
    #[error(
        "`{0}` is not a DKIM selector: DNS labels of letters, digits and hyphens, e.g. mail2026"
    )]
    Selector(String),
    /// lettre refused the key (checked once, when the signer is made).
    #[error("lettre cannot use this key: {0}")]
    Unusable(String),
    /// lettre refused the key when signing (it accepted it at start-up).
    #[error("the DKIM key is not usable: {0}")]
    NotUsable(String),
    /// A signed header's name (a constant) did not parse.
    #[error("bad header name: {0}")]
    HeaderName(String),
    /// Another thread panicked while holding the signer's cache.
    #[error("DKIM cache poisoned")]
    Poisoned,
    /// Making a new RSA key failed.
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
    /// Writing a key in another encoding failed; `what` names the key.
    #[error("cannot {what}: {detail}")]
    Encode {
        /// "re-encode the RSA key", "encode the RSA public key", …
        what: &'static str,
        /// The library's message.
        detail: String,
    },
    /// A key [`read_key`] accepted did not read again (for its public half).
    #[error("{0}")]
    Reread(String),
}

impl DkimError {
    fn encode(what: &'static str, e: impl std::fmt::Display) -> DkimError {
        DkimError::Encode {
            what,
            detail: e.to_string(),
        }
    }

    fn reread(e: impl std::fmt::Display) -> DkimError {
        DkimError::Reread(e.to_string())
    }
}

/// A checked private key in the form lettre reads (PKCS#1 PEM or base64 seed).
#[derive(Clone)]
struct KeyText {
    algorithm: Algorithm,
    text: String,
}

/// Smallest RSA key accepted: RFC 8301 §3.2 forbids signing with fewer than 1024 bits.
const MIN_RSA_BITS: usize = 1024;

/// Reads a key file's text: which algorithm, in lettre's form. The error says what
/// was expected.
fn read_key(text: &str) -> Result<KeyText, DkimError> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let text = text.trim();
    let rsa_key = if text.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        Some(rsa::RsaPrivateKey::from_pkcs1_pem(text).map_err(DkimError::Pkcs1)?)
    } else if text.starts_with("-----BEGIN PRIVATE KEY-----") {
        match rsa::RsaPrivateKey::from_pkcs8_pem(text) {
            Ok(key) => Some(key),
            Err(_) => {
                let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text)
                    .map_err(|_| DkimError::OtherPkcs8)?;
                return Ok(KeyText {
                    algorithm: Algorithm::Ed25519,
                    text: B64.encode(key.to_bytes()),
                });
            }
        }
    } else {
        None
    };
    if let Some(key) = rsa_key {
        let bits = key.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(DkimError::ShortRsa { bits });
        }
        let pem = key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| DkimError::encode("re-encode the RSA key", e))?;
        return Ok(KeyText {
            algorithm: Algorithm::Rsa,
            text: pem.to_string(),
        });
    }
    let seed = B64.decode(text).map_err(|_| DkimError::NotAKey)?;
    if seed.len() != 32 {
        return Err(DkimError::SeedLength(seed.len()));
    }
    Ok(KeyText {
        algorithm: Algorithm::Ed25519,
        text: text.to_owned(),
    })
}

/// Whether `selector` can be a DKIM selector: dot-separated DNS labels (RFC 6376 §3.1),
/// letters, digits and hyphens, not starting or ending with a hyphen.
pub fn check_selector(selector: &str) -> Result<(), DkimError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if selector.len() <= 200 && selector.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(DkimError::Selector(selector.to_owned()))
    }
}

/// A signing domain and its parsed configuration.
type Cached = (String, Arc<DkimConfig>);

/// Signs outgoing messages with one key and selector, for the domain of each message's
/// `From`. Cheap to clone; the parsed key is kept for the last domain signed for.
#[derive(Clone)]
pub struct Signer {
    selector: String,
    key: KeyText,
    /// The signing configuration for the last domain (the site's From domain, which
    /// rarely changes): parsing an RSA key costs more than a signature.
    cached: Arc<Mutex<Option<Cached>>>,
}

impl std::fmt::Debug for Signer {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("selector", &self.selector)
            .field("algorithm", &self.key.algorithm)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a key file's text and a selector; the error says what is wrong.
    pub fn new(key_text: &str, selector: &str) -> Result<Signer, DkimError> {
        check_selector(selector)?;
        let key = read_key(key_text)?;
        // Checks lettre reads it too, so a send can never meet a bad key.
        DkimSigningKey::new(&key.text, key.algorithm.lettre())
            .map_err(|e| DkimError::Unusable(e.to_string()))?;
        Ok(Signer {
            selector: selector.to_owned(),
            key,
            cached: Arc::new(Mutex::new(None)),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm
    }

    /// The selector.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    fn config_for(&self, domain: &str) -> Result<Arc<DkimConfig>, DkimError> {
        let mut cached = self.cached.lock().map_err(|_| DkimError::Poisoned)?;
        if let Some((d, config)) = cached.as_ref()
            && d == domain
        {
            return Ok(config.clone());
        }
        let key = DkimSigningKey::new(&self.key.text, self.key.algorithm.lettre())
            .map_err(|e| DkimError::NotUsable(e.to_string()))?;
        let headers = SIGNED_HEADERS
            .iter()
            .map(|h| HeaderName::new_from_ascii((*h).to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DkimError::HeaderName(e.to_string()))?;
        let config = Arc::new(DkimConfig::new(
            self.selector.clone(),
            domain.to_owned(),
            key,
            headers,
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        ));
        *cached = Some((domain.to_owned(), config.clone()));
        Ok(config)
    }

    /// Adds a `DKIM-Signature` for `domain` to `message`. The message must carry its
    /// `Content-Type` and `Content-Transfer-Encoding` as its own headers (see
    /// `render::prepare`): lettre signs only the message's headers.
    pub fn sign(&self, message: &mut Message, domain: &str) -> Result<(), DkimError> {
        let config = self.config_for(domain)?;
        message.sign(&config);
        Ok(())
    }
}

/// A new key: the file's text and the DNS record's `p=` value.
pub struct NewKey {
    pub private: String,
    pub public: String,
}

/// Makes a new key: RSA 2048 bits (PKCS#1 PEM) or Ed25519 (base64 seed).
pub fn generate(algorithm: Algorithm) -> Result<NewKey, DkimError> {
    match algorithm {
        Algorithm::Rsa => {
            use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
            use rsa::pkcs8::EncodePublicKey;
            let key = rsa::RsaPrivateKey::new(&mut rand_core_06::OsRng, 2048)
                .map_err(|e| DkimError::Generate(e.to_string()))?;
            let private = key
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(|e| DkimError::encode("encode the RSA key", e))?
                .to_string();
            let public = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| DkimError::encode("encode the RSA public key", e))?;
            Ok(NewKey {
                private,
                public: B64.encode(public.as_bytes()),
            })
        }
        Algorithm::Ed25519 => {
            let seed: [u8; 32] = rand::random();
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            Ok(NewKey {
                private: format!("{}\n", B64.encode(seed)),
                public: B64.encode(key.verifying_key().to_bytes()),
            })
        }
    }
}

/// The public half of a key file, for the DNS record (`p=`).
pub fn public_of(key_text: &str) -> Result<(Algorithm, String), DkimError> {
    let key = read_key(key_text)?;
    match key.algorithm {
        Algorithm::Rsa => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::EncodePublicKey;
            let private =
                rsa::RsaPrivateKey::from_pkcs1_pem(&key.text).map_err(DkimError::reread)?;
            let der = private
                .to_public_key()
                .to_public_key_der()
                .map_err(DkimError::reread)?;
            Ok((Algorithm::Rsa, B64.encode(der.as_bytes())))
        }
        Algorithm::Ed25519 => {
            let seed: [u8; 32] = B64
                .decode(key.text.trim())
                .map_err(DkimError::reread)?
                .try_into()
                .map_err(|_| DkimError::reread("not 32 bytes"))?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            Ok((
                Algorithm::Ed25519,
                B64.encode(key.verifying_key().to_bytes()),
            ))
        }
    }
}

/// The DNS TXT record for `selector` (zone-file form; strings of at most 255 bytes,
/// RFC 1035 §3.3.14, as a 2048-bit RSA key needs two).
pub fn txt_record(selector: &str, domain: &str, algorithm: Algorithm, public: &str) -> String {
    let value = format!("v=DKIM1; k={}; p={public}", algorithm.dns_name());
    let strings = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ");
    format!("{selector}._domainkey.{domain}. IN TXT ( {strings} )")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_read_back_with_their_algorithm() {
        for algorithm in [Algorithm::Ed25519, Algorithm::Rsa] {
            let key = generate(algorithm).expect("a key");
            let signer = Signer::new(&key.private, "sel").expect("readable");
            assert_eq!(signer.algorithm(), algorithm);
            assert_eq!(public_of(&key.private).expect("public").1, key.public);
        }
    }

    #[test]
    fn broken_keys_and_selectors_are_refused_with_a_reason() {
        assert!(Signer::new("garbage", "sel").is_err());
        assert!(
            Signer::new(
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
                "sel"
            )
            .is_err()
        );
        assert!(Signer::new(&B64.encode([1u8; 31]), "sel").is_err());
        let ok = B64.encode([1u8; 32]);
        assert!(Signer::new(&ok, "sel").is_ok());
        for bad in ["", "a b", "-x", "x.", "sél", "a_b"] {
            assert!(Signer::new(&ok, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn txt_record_strings_stay_under_255_bytes() {
        let record = txt_record("s", "example.com", Algorithm::Rsa, &"A".repeat(392));
        assert!(record.starts_with("s._domainkey.example.com. IN TXT ( \"v=DKIM1; k=rsa; p="));
        assert!(record.split('"').all(|s| s.len() <= 255));
    }
}
