//! Finds where to deliver a domain's mail (direct mode): MX by preference, the implicit
//! MX of RFC 5321 §5.1 (the domain's own A/AAAA when it has no MX), null MX (RFC 7505).

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What the DNS says about a recipient domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Hosts to try in order (MX preference, or the domain itself).
    Hosts(Vec<String>),
    /// The domain accepts no mail: NXDOMAIN, no MX and no address, or null MX.
    Unroutable(String),
    /// The resolver did not answer in time (or failed): try again later.
    Unknown(String),
}

/// Why no resolver could be made.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `/etc/resolv.conf` (or its equivalent) could not be read.
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    /// hickory refused the configuration.
    #[error("cannot build the resolver: {0}")]
    Build(String),
}

/// A resolver for MX and address look-ups.
pub struct Dns {
    resolver: Resolver<TokioRuntimeProvider>,
}

impl Dns {
    /// Uses `server` (tests: dnsmasq on 127.0.0.1), else the system's resolver.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, DnsError> {
        let mut builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in ns.connections.iter_mut() {
                    connection.port = addr.port();
                }
                Resolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => Resolver::builder_tokio().map_err(|e| DnsError::SystemConfig(e.to_string()))?,
        };
        builder.options_mut().timeout = Duration::from_secs(2);
        builder.options_mut().attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Build(e.to_string()))?;
        Ok(Dns { resolver })
    }

    /// The mail hosts of `domain`.
    pub async fn route(&self, domain: &str) -> Route {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                // RFC 7505 §3: a single "MX 0 ." means the domain accepts no mail.
                if mx.len() == 1 && (mx[0].1 == "." || mx[0].1.is_empty()) {
                    return Route::Unroutable(format!(
                        "{domain} publishes a null MX (RFC 7505): it accepts no mail"
                    ));
                }
                mx.retain(|(_, host)| host != "." && !host.is_empty());
                if mx.is_empty() {
                    return self.implicit_mx(domain).await;
                }
                mx.sort_by_key(|(preference, _)| *preference);
                Route::Hosts(
                    mx.into_iter()
                        .map(|(_, host)| host.trim_end_matches('.').to_owned())
                        .collect(),
                )
            }
            Err(e) if e.is_nx_domain() => {
                Route::Unroutable(format!("{domain} does not exist (NXDOMAIN)"))
            }
            Err(e) if e.is_no_records_found() => self.implicit_mx(domain).await,
            Err(e) => Route::Unknown(format!("DNS look-up of {domain} failed: {e}")),
        }
    }

    /// RFC 5321 §5.1: no MX, so the domain itself is the host, if it has an address.
    async fn implicit_mx(&self, domain: &str) -> Route {
        match self.addresses(domain).await {
            Ok(ips) if !ips.is_empty() => Route::Hosts(vec![domain.to_owned()]),
            Ok(_) => Route::Unroutable(format!("{domain} has no MX and no A/AAAA record")),
            Err(Route::Unroutable(m)) => Route::Unroutable(m),
            Err(other) => other,
        }
    }

    /// The addresses of a host.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, Route> {
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                Err(Route::Unroutable(format!("{host} has no A/AAAA record")))
            }
            Err(e) => Err(Route::Unknown(format!("DNS look-up of {host} failed: {e}"))),
        }
    }
}
