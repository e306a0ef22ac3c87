//! The notice fixtures of `tests/fixtures/bounces/` (see its README), each with the
//! recipient and class a reader should find.

use super::*;

/// The decision id every fixture's VERP address carries.
const FIXTURE_ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/bounces/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// One fixture: file, kind, failed recipient, class, enhanced status quoted.
type Row = (
    &'static str,
    NoticeKind,
    Option<&'static str>,
    NoticeClass,
    Option<&'static str>,
);

/// Every fixture.
const TABLE: &[Row] = &[
    (
        "qmail_remote_user_unknown.eml",
        NoticeKind::Bounce,
        Some("alma@example.test"),
        NoticeClass::Recipient,
        Some("5.1.1"),
    ),
    (
        "qmail_local_no_mailbox.eml",
        NoticeKind::Bounce,
        Some("bert@example.test"),
        NoticeClass::Recipient,
        Some("5.1.1"),
    ),
    (
        "exim_user_unknown.eml",
        NoticeKind::Bounce,
        Some("cleo@example.test"),
        NoticeClass::Recipient,
        Some("5.1.1"),
    ),
    (
        "exim_mailbox_full.eml",
        NoticeKind::Bounce,
        Some("dora@example.test"),
        NoticeClass::MailboxFull,
        Some("5.2.2"),
    ),
    (
        "sendmail_transcript.eml",
        NoticeKind::Bounce,
        Some("emil@example.test"),
        NoticeClass::Recipient,
        Some("5.1.1"),
    ),
    (
        "exchange_ndr.eml",
        NoticeKind::Bounce,
        Some("fay@example.test"),
        NoticeClass::Recipient,
        Some("5.1.1"),
    ),
    (
        "outlook_com_policy.eml",
        NoticeKind::Bounce,
        Some("gus@example.test"),
        NoticeClass::SenderSide,
        Some("5.7.708"),
    ),
    (
        "gmail_no_such_user.eml",
        NoticeKind::Bounce,
        Some("hana@example.test"),
        NoticeClass::Recipient,
        Some("5.1.1"),
    ),
    (
        "yahoo_no_account.eml",
        NoticeKind::Bounce,
        Some("ines@example.test"),
        NoticeClass::Recipient,
        None,
    ),
    (
        "yahoo_deferred.eml",
        NoticeKind::Bounce,
        Some("jack@example.test"),
        NoticeClass::Transient,
        Some("4.7.0"),
    ),
    (
        "postfix_plain.eml",
        NoticeKind::Bounce,
        Some("kate@example.test"),
        NoticeClass::Recipient,
        Some("5.1.1"),
    ),
    (
        "postfix_policy_plain.eml",
        NoticeKind::Bounce,
        Some("liv@example.test"),
        NoticeClass::SenderSide,
        Some("5.7.1"),
    ),
    (
        "unclassified_bounce.eml",
        NoticeKind::Bounce,
        Some("mona@example.test"),
        NoticeClass::Unclassified,
        None,
    ),
    (
        "out_of_office.eml",
        NoticeKind::AutoReply,
        None,
        NoticeClass::Unclassified,
        None,
    ),
    (
        "vacation.eml",
        NoticeKind::AutoReply,
        None,
        NoticeClass::Unclassified,
        None,
    ),
];

#[test]
fn every_fixture_gives_its_recipient_and_class() {
    let mut failures = Vec::new();
    for &(name, kind, recipient, class, enhanced) in TABLE {
        let notice = read(&fixture(name), None);
        let got = (
            notice.kind,
            notice.failed_recipient.as_deref(),
            notice.class(),
            notice.reply.as_ref().and_then(|r| r.enhanced.as_deref()),
            notice.decision_id.as_deref(),
        );
        let want = (kind, recipient, class, enhanced, Some(FIXTURE_ID));
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}\n  {notice:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_file_is_in_the_table() {
    let dir = format!("{}/tests/fixtures/bounces", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).expect("the fixture directory") {
        let name = entry
            .expect("an entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".eml") {
            assert!(
                TABLE.iter().any(|row| row.0 == name),
                "{name} is not in TABLE"
            );
        }
    }
}

#[test]
fn quoted_replies_keep_their_words() {
    let gmail = read(&fixture("gmail_no_such_user.eml"), None);
    let reply = gmail.reply.expect("a reply");
    assert_eq!(reply.code, Some(550));
    assert!(
        reply.text.starts_with("550-5.1.1 The email account"),
        "{}",
        reply.text
    );
    assert!(reply.text.contains("unnecessary spaces"), "{}", reply.text);
    let postfix = read(&fixture("postfix_plain.eml"), None);
    let text = postfix.reply.expect("a reply").text;
    assert!(text.contains("User unknown in local"), "{text}");
    let exchange = read(&fixture("exchange_ndr.eml"), None)
        .reply
        .expect("a reply");
    assert_eq!(
        exchange.text,
        "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##"
    );
}

#[test]
fn the_smtp_recipient_names_the_decision_first() {
    let other = "bounces+0193ffff-0000-7000-8000-000000000000@example.test";
    let notice = read(&fixture("postfix_plain.eml"), Some(other));
    assert_eq!(
        notice.decision_id.as_deref(),
        Some("0193ffff-0000-7000-8000-000000000000")
    );
    let notice = read(&fixture("postfix_plain.eml"), Some("fbl@example.test"));
    assert_eq!(notice.decision_id.as_deref(), Some(FIXTURE_ID));
}

#[test]
fn a_persons_reply_quoting_a_status_is_not_a_bounce() {
    let raw = std::fs::read(format!(
        "{}/tests/fixtures/reports/not_a_report.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the fixture");
    let notice = read(&raw, None);
    assert_eq!(notice.kind, NoticeKind::Other);
    assert_eq!(notice.class(), NoticeClass::Unclassified);
    assert_eq!(notice.decision_id.as_deref(), Some(FIXTURE_ID));
}

#[test]
fn no_verp_address_names_no_decision() {
    let raw =
        b"From: someone@example.test\r\nTo: desk@example.test\r\nSubject: hi\r\n\r\nhello\r\n";
    let notice = read(raw, None);
    assert_eq!(notice.decision_id, None);
    assert_eq!(notice.kind, NoticeKind::Other);
}

#[test]
fn reply_classes_follow_the_outcome_table() {
    let reply = |code, enhanced: Option<&str>| QuotedReply {
        code,
        enhanced: enhanced.map(str::to_owned),
        text: String::new(),
    };
    assert_eq!(
        reply(Some(550), Some("5.1.1")).class(),
        NoticeClass::Recipient
    );
    assert_eq!(
        reply(Some(552), Some("5.2.2")).class(),
        NoticeClass::MailboxFull
    );
    assert_eq!(reply(None, Some("5.2.2")).class(), NoticeClass::MailboxFull);
    assert_eq!(
        reply(Some(550), Some("5.7.1")).class(),
        NoticeClass::SenderSide
    );
    assert_eq!(
        reply(Some(554), Some("5.3.4")).class(),
        NoticeClass::SenderSide
    );
    assert_eq!(reply(Some(550), None).class(), NoticeClass::Recipient);
    assert_eq!(reply(Some(450), None).class(), NoticeClass::Transient);
    assert_eq!(
        reply(Some(452), Some("4.2.2")).class(),
        NoticeClass::Transient
    );
    assert_eq!(
        reply(Some(550), Some("4.2.2")).class(),
        NoticeClass::Recipient
    );
    assert_eq!(reply(None, None).class(), NoticeClass::Unclassified);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4_096)) {
        let _ = read(&raw, None);
    }

    #[test]
    fn arbitrary_text_after_a_bounce_header_never_panics(body in "[ -~\n<>@#.:;'\"0-9-]{0,2000}") {
        let raw = format!("From: MAILER-DAEMON@x.example.test\nSubject: failure notice\n\n{body}");
        let _ = read(raw.as_bytes(), None);
    }
}
