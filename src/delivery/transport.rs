//! The transports of SPEC §4 behind one `deliver`: an .eml file per message, a pooled
//! smarthost, or direct delivery to the recipient's MX.

use super::classify::{Reply, Stage, TryEnd};
use super::dns::{Dns, Route};
use super::render::Prepared;
use super::smtp::{self, Pool, Target, Transaction};
use super::{SmtpTls, TransportSpec};
use crate::config::Config;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// SMTP command timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What one try produced.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// How it ended for the customer.
    pub end: TryEnd,
    /// The server that answered (`host:port`, or the file path).
    pub server: Option<String>,
    /// The `copy_to` RCPT's reply, when there was a copy.
    pub copy: Option<String>,
    /// The TLS version the try ran over (`TLSv1.3`), if any (SPEC §12).
    pub tls: Option<String>,
}

/// Why the configured transport cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The file transport's directory cannot be made.
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// `MAILTRAIL_SMTP_CA` cannot be read.
    #[error("cannot read MAILTRAIL_SMTP_CA {}: {source}", .path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// No resolver for direct delivery.
    #[error(transparent)]
    Dns(#[from] super::dns::DnsError),
}

/// Where emails go.
pub enum Transport {
    /// Write each message into this directory.
    File(PathBuf),
    /// Relay through one smarthost.
    Smarthost(Pool),
    /// Look up each recipient's MX.
    Direct {
        dns: Dns,
        port: u16,
        /// Opportunistic TLS (no certificate check).
        tls: Arc<rustls::ClientConfig>,
        /// The EHLO name.
        ehlo: String,
    },
}

impl Transport {
    /// Builds the transport `config` names.
    pub fn from_config(config: &Config) -> Result<Transport, TransportError> {
        Ok(match &config.transport {
            TransportSpec::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| TransportError::CreateDir {
                    dir: dir.clone(),
                    source,
                })?;
                Transport::File(dir.clone())
            }
            TransportSpec::Smtp {
                host,
                port,
                tls,
                credentials,
            } => {
                let ca_pem = match &config.smtp_ca {
                    Some(path) => {
                        Some(
                            std::fs::read(path).map_err(|source| TransportError::ReadCa {
                                path: path.clone(),
                                source,
                            })?,
                        )
                    }
                    None => None,
                };
                let tls_config = match tls {
                    SmtpTls::None => None,
                    _ => Some(super::tls::verified(ca_pem.as_deref())?),
                };
                let target = Target {
                    host: host.clone(),
                    connect_to: host.clone(),
                    port: *port,
                    tls: *tls,
                    credentials: credentials.clone(),
                    tls_config,
                    ehlo: config.ehlo_name.clone(),
                    timeout: TIMEOUT,
                };
                Transport::Smarthost(Pool::new(target, config.concurrency.max(1)))
            }
            TransportSpec::Direct => Transport::Direct {
                dns: Dns::new(config.dns)?,
                port: config.mx_port,
                tls: super::tls::opportunistic()?,
                ehlo: config.ehlo_name.clone(),
            },
        })
    }

    /// Delivers one message.
    pub async fn deliver(&self, message: &Prepared) -> Attempt {
        match self {
            Transport::File(dir) => write_file(dir, message).await,
            Transport::Smarthost(pool) => {
                let (Transaction { end, copy, .. }, tls) = pool.send(message).await;
                Attempt {
                    end,
                    server: Some(pool.label()),
                    copy,
                    tls,
                }
            }
            Transport::Direct {
                dns,
                port,
                tls,
                ehlo,
            } => {
                let mx = Mx {
                    dns,
                    port: *port,
                    tls,
                    ehlo,
                };
                let same_domain = message
                    .copy
                    .as_ref()
                    .is_none_or(|c| c.domain() == message.customer.domain());
                if same_domain {
                    return direct(&mx, message).await;
                }
                // A copy in another domain goes to its own MX, as a separate transaction.
                let mut alone = message.clone();
                let copy = alone.copy.take();
                let mut attempt = direct(&mx, &alone).await;
                if let Some(copy) = copy {
                    let copy_message = Prepared {
                        customer: copy,
                        copy: None,
                        ..message.clone()
                    };
                    let copy_attempt = direct(&mx, &copy_message).await;
                    attempt.copy = Some(describe(&copy_attempt.end));
                }
                attempt
            }
        }
    }
}

/// One line describing how a try ended, for the copy's record.
pub fn describe(end: &TryEnd) -> String {
    match end {
        TryEnd::Accepted(r) => r.line(),
        TryEnd::Refused(_, r) => r.line(),
        TryEnd::NoReply(stage, m) => format!("no reply at {}: {m}", stage.as_str()),
        TryEnd::Unroutable(m) => m.clone(),
    }
}

async fn write_file(dir: &std::path::Path, message: &Prepared) -> Attempt {
    let path = dir.join(format!("{}.eml", message.decision_id));
    let tmp = dir.join(format!(".{}.eml.tmp", message.decision_id));
    // A delivered message carries its envelope sender as Return-Path (RFC 5321 §4.4).
    let bytes = [
        format!("Return-Path: <{}>\r\n", message.envelope_from).into_bytes(),
        message.bytes.clone(),
    ]
    .concat();
    let result = tokio::task::spawn_blocking({
        let (path, tmp) = (path.clone(), tmp.clone());
        move || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        }
    })
    .await;
    let server = Some(format!("file:{}", dir.display()));
    match result {
        Ok(Ok(())) => Attempt {
            end: TryEnd::Accepted(Reply::new(250, format!("written to {}", path.display()))),
            server,
            copy: None,
            tls: None,
        },
        Ok(Err(e)) => Attempt {
            end: TryEnd::NoReply(Stage::Data, format!("cannot write {}: {e}", path.display())),
            server,
            copy: None,
            tls: None,
        },
        Err(e) => Attempt {
            end: TryEnd::NoReply(Stage::Data, format!("write task failed: {e}")),
            server,
            copy: None,
            tls: None,
        },
    }
}

/// What direct delivery needs.
struct Mx<'a> {
    dns: &'a Dns,
    port: u16,
    tls: &'a Arc<rustls::ClientConfig>,
    ehlo: &'a str,
}

async fn direct(mx: &Mx<'_>, message: &Prepared) -> Attempt {
    let (dns, port) = (mx.dns, mx.port);
    let domain = message.customer.domain();
    let hosts = match dns.route(domain).await {
        Route::Hosts(hosts) => hosts,
        Route::Unroutable(m) => {
            return Attempt {
                end: TryEnd::Unroutable(m),
                server: None,
                copy: None,
                tls: None,
            };
        }
        Route::Unknown(m) => {
            return Attempt {
                end: TryEnd::NoReply(Stage::Dns, m),
                server: None,
                copy: None,
                tls: None,
            };
        }
    };
    let mut last = TryEnd::NoReply(
        Stage::Connect,
        format!("no mail server of {domain} answered"),
    );
    let mut last_server = None;
    for host in hosts {
        let ips = match dns.addresses(&host).await {
            Ok(ips) => ips,
            Err(Route::Unknown(m)) => {
                last = TryEnd::NoReply(Stage::Dns, m);
                continue;
            }
            Err(_) => continue,
        };
        for ip in ips {
            let target = Target {
                host: host.clone(),
                connect_to: ip.to_string(),
                port,
                tls: SmtpTls::Opportunistic,
                credentials: None,
                tls_config: Some(mx.tls.clone()),
                ehlo: mx.ehlo.to_owned(),
                timeout: TIMEOUT,
            };
            last_server = Some(format!("{host} [{ip}]:{port}"));
            match smtp::connect(&target).await {
                Ok(mut conn) => {
                    let t = smtp::transact_within(&mut conn, message, TIMEOUT * 4).await;
                    let _ = tokio::time::timeout(TIMEOUT, conn.quit()).await;
                    return Attempt {
                        end: t.end,
                        server: last_server,
                        copy: t.copy,
                        tls: conn.tls.clone(),
                    };
                }
                // RFC 5321 §5.1: try the next address when this one does not answer.
                Err(end @ TryEnd::NoReply(..)) => last = end,
                Err(end) => {
                    return Attempt {
                        end,
                        server: last_server,
                        copy: None,
                        tls: None,
                    };
                }
            }
        }
    }
    Attempt {
        end: last,
        server: last_server,
        copy: None,
        tls: None,
    }
}
