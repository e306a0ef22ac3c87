//! The `--transport` setting (SPEC §4): `file:DIR`, `smtp://…`, `smtps://…`, `direct`.

use std::fmt;
use std::path::PathBuf;

/// TLS on a smarthost connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// STARTTLS, required.
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
    /// STARTTLS when offered, any certificate, plain after a failed handshake: direct
    /// delivery to an MX (SPEC §12). Never parsed from a transport URL.
    Opportunistic,
}

/// Where emails go.
#[derive(Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// Write each message as an .eml file into this directory.
    File(PathBuf),
    /// Relay through a smarthost.
    Smtp {
        host: String,
        port: u16,
        tls: SmtpTls,
        /// AUTH user and password, if any.
        credentials: Option<(String, String)>,
    },
    /// Look up each recipient domain's MX and deliver there.
    Direct,
}

impl fmt::Debug for TransportSpec {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportSpec::File(dir) => write!(f, "file:{}", dir.display()),
            TransportSpec::Smtp {
                host,
                port,
                tls,
                credentials,
            } => write!(
                f,
                "smtp://{}{host}:{port} ({tls:?})",
                if credentials.is_some() { "***@" } else { "" }
            ),
            TransportSpec::Direct => f.write_str("direct"),
        }
    }
}

impl fmt::Display for TransportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl TransportSpec {
    /// Parses the setting; the error says what would be valid.
    pub fn parse(s: &str) -> Result<TransportSpec, String> {
        let s = s.trim();
        if s == "direct" {
            return Ok(TransportSpec::Direct);
        }
        if let Some(dir) = s.strip_prefix("file:") {
            if dir.is_empty() {
                return Err("`file:` needs a directory, e.g. file:./data/outgoing".into());
            }
            return Ok(TransportSpec::File(PathBuf::from(dir)));
        }
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("`{s}` is not a transport: use file:DIR, smtp://host:port, smtps://host:465 or direct"))?;
        let implicit = match scheme {
            "smtp" => false,
            "smtps" => true,
            other => {
                return Err(format!(
                    "unknown transport scheme `{other}`: use smtp:// or smtps://"
                ));
            }
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((percent_decode(user), percent_decode(pass))), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port `{p}` in transport"))?,
            ),
            None => (hostport, if implicit { 465 } else { 25 }),
        };
        if host.is_empty() {
            return Err("the transport URL names no host".into());
        }
        let mut tls = if implicit {
            SmtpTls::Implicit
        } else {
            SmtpTls::None
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("tls", "starttls" | "required")) if !implicit => tls = SmtpTls::StartTls,
                Some(("tls", "none")) if !implicit => tls = SmtpTls::None,
                _ => {
                    return Err(format!(
                        "unknown transport option `{pair}`: only tls=starttls or tls=none"
                    ));
                }
            }
        }
        Ok(TransportSpec::Smtp {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            tls,
            credentials,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_forms() {
        assert_eq!(
            TransportSpec::parse("file:./data/outgoing"),
            Ok(TransportSpec::File("./data/outgoing".into()))
        );
        assert_eq!(TransportSpec::parse("direct"), Ok(TransportSpec::Direct));
        assert_eq!(
            TransportSpec::parse("smtp://user:p%40ss@mail.example.com:587?tls=starttls"),
            Ok(TransportSpec::Smtp {
                host: "mail.example.com".into(),
                port: 587,
                tls: SmtpTls::StartTls,
                credentials: Some(("user".into(), "p@ss".into()))
            })
        );
        assert!(matches!(
            TransportSpec::parse("smtps://relay:465"),
            Ok(TransportSpec::Smtp {
                tls: SmtpTls::Implicit,
                port: 465,
                ..
            })
        ));
        assert!(matches!(
            TransportSpec::parse("smtp://127.0.0.1:2525"),
            Ok(TransportSpec::Smtp {
                tls: SmtpTls::None,
                port: 2525,
                ..
            })
        ));
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for bad in [
            "",
            "file:",
            "ftp://x",
            "smtp://",
            "smtp://h:notaport",
            "smtp://h?tls=maybe",
        ] {
            assert!(TransportSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
