//! Direct delivery (issue 4, SPEC §4 `MAILTRAIL_TRANSPORT=direct`): the recipient
//! domain's MX is looked up in the real dnsmasq peer (`tests/peers/dnsmasq.conf.template`)
//! and the message goes to the policy SMTP peer on `MAILTRAIL_MX_PORT`. One test per kind
//! of DNS answer: MX, the implicit MX of an A-only domain, null MX (RFC 7505), NXDOMAIN,
//! a resolver timeout, a dead preferred MX, and a domain whose only MX refuses.

use serde_json::Value;

use super::delivery::{
    PROJECT, add, assert_not_suppressed, attempts, message_id, messages_for, setup, suppression,
    verp, wait_status,
};
use crate::common::{App, DnsPeer, SmtpPeer};

/// The peers and the app of one direct-delivery test.
struct Direct {
    /// The MX every test host resolves to (on 127.0.0.1, or not at all).
    smtp: SmtpPeer,
    /// Held so dnsmasq runs as long as the app.
    _dns: DnsPeer,
    app: App,
}

impl Direct {
    /// Starts dnsmasq, the SMTP peer and an app delivering directly through them.
    fn start() -> Direct {
        let dns = DnsPeer::start();
        let smtp = SmtpPeer::start();
        let app = App::builder().direct(&dns, &smtp).start();
        setup(&app);
        Direct {
            smtp,
            _dns: dns,
            app,
        }
    }

    /// Queues an invitation to `recipient`, waits for `status` and checks the decision's
    /// reason and its first attempt (`stage`, `outcome`). Returns the decision.
    #[track_caller]
    fn check(
        &self,
        recipient: &str,
        status: &str,
        reason: Option<&str>,
        stage: &str,
        outcome: &str,
    ) -> Value {
        let id = add(&self.app, PROJECT, recipient);
        let decision = wait_status(&self.app, &id, status);
        assert_eq!(decision["status_reason"].as_str(), reason, "{decision:#}");
        let attempts = attempts(&decision);
        let attempt = attempts
            .first()
            .unwrap_or_else(|| panic!("no attempt recorded: {decision:#}"));
        assert_eq!(attempt["stage"], stage, "{attempt:#}");
        assert_eq!(attempt["outcome"], outcome, "{attempt:#}");
        assert!(
            attempt["reply"].as_str().is_some_and(|r| !r.is_empty()),
            "{attempt:#}"
        );
        decision
    }

    /// `{host} [127.0.0.1]:{port}`: the server label of a delivery to the peer.
    fn server(&self, host: &str) -> String {
        format!("{host} [127.0.0.1]:{}", self.smtp.port())
    }

    /// Checks the peer received decision `decision`'s message for `recipient`.
    #[track_caller]
    fn assert_received(&self, decision: &Value, recipient: &str) {
        let id = decision["id"].as_str().expect("an id");
        let messages = self.smtp.wait_for_messages(1, super::delivery::WAIT);
        let mine = messages_for(&messages, id);
        assert_eq!(mine.len(), 1, "{messages:?}");
        assert_eq!(mine[0].rcpt_tos, [recipient]);
        assert_eq!(mine[0].mail_from, verp(id));
        assert_eq!(decision["message_id"], message_id(id));
    }
}

#[test]
fn domain_with_mx_is_delivered_to_its_mx() {
    let direct = Direct::start();
    let decision = direct.check("alice@example.test", "sent", None, "data", "sent");
    assert_eq!(
        attempts(&decision)[0]["server"],
        direct.server("mx.example.test"),
        "{decision:#}"
    );
    assert_eq!(attempts(&decision)[0]["smtp_code"], 250);
    direct.assert_received(&decision, "alice@example.test");
}

#[test]
fn domain_with_only_an_a_record_is_delivered_to_that_address() {
    let direct = Direct::start();
    let decision = direct.check("bob@aonly.test", "sent", None, "data", "sent");
    assert_eq!(
        attempts(&decision)[0]["server"],
        direct.server("aonly.test"),
        "RFC 5321 §5.1 implicit MX: {decision:#}"
    );
    direct.assert_received(&decision, "bob@aonly.test");
}

#[test]
fn null_mx_domain_fails_as_domain_unroutable_without_suppression() {
    let direct = Direct::start();
    direct.check(
        "carol@nullmx.test",
        "failed",
        Some("domain_unroutable"),
        "dns",
        "domain_unroutable",
    );
    assert_not_suppressed(&direct.app, "carol@nullmx.test");
    assert!(direct.smtp.messages().is_empty());
}

#[test]
fn null_mx_domain_with_a_web_address_is_not_delivered_to_that_address() {
    let direct = Direct::start();
    // RFC 7505 §3: a null MX forbids the fallback to the domain's A record.
    direct.check(
        "dave@nullmx-web.test",
        "failed",
        Some("domain_unroutable"),
        "dns",
        "domain_unroutable",
    );
    assert_not_suppressed(&direct.app, "dave@nullmx-web.test");
    assert!(direct.smtp.messages().is_empty());
}

#[test]
fn nonexistent_domain_fails_as_domain_unroutable_without_suppression() {
    let direct = Direct::start();
    direct.check(
        "erin@nope.test",
        "failed",
        Some("domain_unroutable"),
        "dns",
        "domain_unroutable",
    );
    assert_not_suppressed(&direct.app, "erin@nope.test");
}

#[test]
fn dns_timeout_defers() {
    let direct = Direct::start();
    let decision = direct.check("frank@tempfail.test", "deferred", None, "dns", "deferred");
    assert!(decision["next_attempt_at"].is_string(), "{decision:#}");
    assert!(decision["status_reason"].is_null(), "{decision:#}");
    assert_not_suppressed(&direct.app, "frank@tempfail.test");
}

#[test]
fn dead_preferred_mx_is_skipped_for_the_next_one() {
    let direct = Direct::start();
    let decision = direct.check("grace@twomx.test", "sent", None, "data", "sent");
    let attempts = attempts(&decision);
    assert_eq!(
        attempts.len(),
        1,
        "one try covers both MX hosts: {decision:#}"
    );
    assert_eq!(
        attempts[0]["server"],
        direct.server("mx2.twomx.test"),
        "{decision:#}"
    );
    direct.assert_received(&decision, "grace@twomx.test");
}

#[test]
fn domain_whose_only_mx_refuses_connections_defers() {
    let direct = Direct::start();
    let decision = direct.check("heidi@mxdown.test", "deferred", None, "connect", "deferred");
    let server = attempts(&decision)[0]["server"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(server.contains("127.0.0.3"), "{decision:#}");
    assert_not_suppressed(&direct.app, "heidi@mxdown.test");
}

#[test]
fn hard_bounce_from_the_mx_suppresses_with_its_host() {
    let direct = Direct::start();
    let decision = direct.check(
        "bounce-1@example.test",
        "bounced",
        Some("hard_bounce"),
        "rcpt",
        "bounced",
    );
    let found = suppression(&direct.app, "bounce-1@example.test")
        .unwrap_or_else(|| panic!("bounce-1 must be suppressed: {decision:#}"));
    assert_eq!(found["reason"], "hard_bounce", "{found:#}");
    assert_eq!(found["smtp_code"], 550, "{found:#}");
    assert_eq!(found["enhanced_code"], "5.1.1", "{found:#}");
    assert_eq!(found["stage"], "rcpt", "{found:#}");
    assert_eq!(found["decision_id"], decision["id"], "{found:#}");
    assert!(
        found["remote_host"]
            .as_str()
            .is_some_and(|host| host.contains(&format!("127.0.0.1]:{}", direct.smtp.port()))),
        "{found:#}"
    );
}
