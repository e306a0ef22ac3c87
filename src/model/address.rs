//! Email addresses: the one place where user input becomes an [`EmailAddress`].
//!
//! SPEC §1 "Address normalization": trim, reject CR/LF anywhere, accept exactly one
//! RFC 5321 mailbox (optionally as `Display Name <addr>`), lowercase the whole address and
//! turn an internationalized domain into punycode. Identity, suppression and look-ups all
//! compare the normalized string, so every other layer takes an `EmailAddress` and never
//! re-checks it.
//!
//! This module must never panic on input, never do I/O, and never hand out an address
//! that could smuggle a header or a second recipient into SMTP.
//!
//! Choices where the RFCs leave room (SPEC is silent):
//! - A trailing dot on the domain (`bob@example.com.`) is rejected, not stripped: RFC 5321
//!   §4.1.2 `Domain` has no root dot, and guessing would create a second spelling.
//! - Address literals (`bob@[192.0.2.1]`, and a bare `bob@192.0.2.1`) are rejected: we mail
//!   customers at their domains, not hosts.
//! - Non-ASCII local parts (SMTPUTF8, RFC 6531) are rejected: our relays may not offer
//!   SMTPUTF8, and without Unicode normalization two spellings of one mailbox would be two
//!   customers. Non-ASCII domains are fine, they become punycode.
//! - Quoted local parts (`"a b"@example.com`) are kept quoted, as given, lowercased.
//! - A display name is either one quoted string (`"Smith, Bob"`, with `\"` escapes) or plain
//!   words with no RFC 5322 specials; comments (`(Sales)`) and mixed forms are rejected.
//! - Control characters (tab, NUL, DEL, C1) are rejected anywhere, display name included.

use std::fmt;
use std::net::Ipv4Addr;

/// Raw input kept for invalid addresses is cut to this many bytes (SPEC §3).
pub const RAW_INPUT_LIMIT: usize = 320;

/// Longest input we look at: one header line (RFC 5322 §2.1.1). Anything longer is
/// rejected before any parsing, which bounds the work done on hostile input.
const INPUT_LIMIT: usize = 998;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
const ADDRESS_LIMIT: usize = 254;
/// RFC 5321 §4.5.3.1.1.
const LOCAL_PART_LIMIT: usize = 64;
/// RFC 1035 §2.3.4: 255 octets on the wire is 253 characters written out.
const DOMAIN_LIMIT: usize = 253;
/// RFC 1035 §2.3.4.
const LABEL_LIMIT: usize = 63;

/// A normalized RFC 5321 mailbox: trimmed, lowercased, IDN domain in punycode.
///
/// The field is private: the only ways to get one are [`EmailAddress::parse`] and
/// [`ParsedMailbox::parse`], so holding one proves the checks ran. There is deliberately
/// no `From<String>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses one mailbox, with or without a display name, and drops the name.
    pub fn parse(input: &str) -> Result<EmailAddress, AddressError> {
        ParsedMailbox::parse(input).map(|mailbox| mailbox.address)
    }

    /// The normalized address, e.g. `bob@xn--bcher-kva.example`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the last `@`, lowercased (quotes kept if it was quoted).
    pub fn local_part(&self) -> &str {
        // The domain can never contain `@`, so the last one is the separator even when a
        // quoted local part holds one.
        self.0.rsplit_once('@').map_or(&self.0, |(local, _)| local)
    }

    /// The domain in lowercase ASCII (punycode for an internationalized domain).
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// The input as recorded for an invalid address (SPEC §3): trimmed and cut to
    /// [`RAW_INPUT_LIMIT`] bytes on a character boundary. It may still hold anything,
    /// CR/LF included, so it is for storage and display only, never for SMTP. A NUL
    /// byte, which PostgreSQL cannot store in text, is recorded as U+FFFD on both
    /// engines alike.
    pub fn raw_input(input: &str) -> String {
        let input = input.trim();
        input[..input.floor_char_boundary(RAW_INPUT_LIMIT)].replace('\0', "\u{FFFD}")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A mailbox as given on input: `Bob <Bob@Example.com>` gives display name `Some("Bob")`
/// and address `bob@example.com`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedMailbox {
    /// The normalized address; this, not the name, is the customer's identity.
    pub address: EmailAddress,
    /// The display name, unquoted and trimmed; `None` when absent or blank.
    pub display_name: Option<String>,
}

impl ParsedMailbox {
    /// Parses exactly one mailbox: `bob@example.com`, `<bob@example.com>`,
    /// `Bob <bob@example.com>` or `"Smith, Bob" <bob@example.com>`.
    pub fn parse(input: &str) -> Result<ParsedMailbox, AddressError> {
        let trimmed = input.trim();
        // Checked first so that hostile input costs no more than the trim did.
        if trimmed.len() > INPUT_LIMIT {
            return Err(AddressError::TooLong);
        }
        // SPEC §1: a line break anywhere is refused, even inside quotes and even where
        // trimming would remove it, so nothing that looked like a header ever gets through.
        if input.contains(['\r', '\n', '\u{85}', '\u{2028}', '\u{2029}']) {
            return Err(AddressError::LineBreak);
        }
        let input = trimmed;
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.contains(char::is_control) {
            return Err(AddressError::ControlCharacter);
        }
        let outline = Outline::scan(input)?;
        let (name, addr_spec) = match outline.angle {
            Some((open, close)) => {
                // RFC 5322 §3.4 name-addr: nothing may follow the closing bracket. The
                // input is trimmed, so the bracket must be its last byte. Both indices
                // are of ASCII brackets, hence on character boundaries.
                if close + 1 != input.len() {
                    return Err(AddressError::Malformed);
                }
                (&input[..open], input[open + 1..close].trim())
            }
            // `a@example.com b@example.com`: two addresses separated by a space.
            None if outline.has_space && outline.at_signs > 1 => {
                return Err(AddressError::MultipleMailboxes);
            }
            None => ("", input),
        };
        if addr_spec.is_empty() {
            return Err(AddressError::Empty);
        }
        let address = normalize_addr_spec(addr_spec)?;
        Ok(ParsedMailbox {
            address,
            display_name: parse_display_name(name)?,
        })
    }
}

/// Why an input is not one valid mailbox. Each message completes "… is not a valid
/// address:" for a support agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing but whitespace, or `<>`.
    #[error("no address was given")]
    Empty,
    /// CR or LF (or a Unicode line separator) anywhere in the input (SPEC §1).
    #[error("it contains a line break, which is never accepted")]
    LineBreak,
    /// A tab, NUL or other control character.
    #[error("it contains a control character such as a tab")]
    ControlCharacter,
    /// Longer than 254 characters once normalized, or absurdly long as given.
    #[error("it is too long; an address has at most 254 characters")]
    TooLong,
    /// The part before `@` is longer than 64 characters.
    #[error("the part before @ is too long; it may have at most 64 characters")]
    LocalPartTooLong,
    /// A list (`,` or `;`), a group, or two bracketed addresses.
    #[error(
        "it holds more than one address; give one at a time, and put a name containing a comma in double quotes"
    )]
    MultipleMailboxes,
    /// No `@` at all.
    #[error("it is missing the @ between the mailbox and the domain, as in bob@example.com")]
    MissingAt,
    /// The part before `@` is not a dot-atom or quoted string (RFC 5321 §4.1.2).
    #[error("the part before @ has characters or dots where they are not allowed")]
    InvalidLocalPart,
    /// The part before `@` is not ASCII; SMTPUTF8 mailboxes are not supported.
    #[error("the part before @ has non-ASCII characters, which we cannot deliver to")]
    NonAsciiLocalPart,
    /// The domain is missing or is not a valid internet domain with at least two labels.
    #[error("the part after @ is not a valid internet domain such as example.com")]
    InvalidDomain,
    /// An IP address instead of a domain: we mail customers, not hosts.
    #[error("the part after @ is an IP address; a domain name such as example.com is needed")]
    DomainLiteral,
    /// The display name has specials (`@`, `(`, `"` …) outside one quoted string.
    #[error("the name before <…> must be plain words or in double quotes")]
    InvalidDisplayName,
    /// Unbalanced quotes or brackets, or text after `>`.
    #[error("it is not written as bob@example.com or Bob <bob@example.com>")]
    Malformed,
}

/// Where the unquoted structure of an input is, found in one pass that skips quoted
/// strings (so `"Smith, Bob"` or `"a<b"@example.com` do not count as structure).
struct Outline {
    /// Byte indices of the one `<` … `>` pair, if any.
    angle: Option<(usize, usize)>,
    /// Unquoted `@` signs.
    at_signs: usize,
    /// Whether there is unquoted whitespace.
    has_space: bool,
}

impl Outline {
    /// Finds the structure, or fails fast on a list, a second `<…>` or an unbalanced
    /// quote or bracket.
    fn scan(input: &str) -> Result<Outline, AddressError> {
        let mut outline = Outline {
            angle: None,
            at_signs: 0,
            has_space: false,
        };
        let mut open = None;
        let mut in_quotes = false;
        let mut escaped = false;
        for (index, c) in input.char_indices() {
            if in_quotes {
                // RFC 5322 §3.2.4: inside a quoted string `\` escapes the next character.
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_quotes = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_quotes = true,
                // RFC 5322 §3.4: `,` separates a mailbox-list and `;` ends a group.
                ',' | ';' => return Err(AddressError::MultipleMailboxes),
                '<' if outline.angle.is_some() => return Err(AddressError::MultipleMailboxes),
                '<' if open.is_some() => return Err(AddressError::Malformed),
                '<' => open = Some(index),
                '>' => match open.take() {
                    Some(start) => outline.angle = Some((start, index)),
                    None => return Err(AddressError::Malformed),
                },
                '@' => outline.at_signs += 1,
                c if c.is_whitespace() => outline.has_space = true,
                _ => {}
            }
        }
        if in_quotes || open.is_some() {
            return Err(AddressError::Malformed);
        }
        Ok(outline)
    }
}

/// Checks `local@domain` and returns it normalized.
fn normalize_addr_spec(addr_spec: &str) -> Result<EmailAddress, AddressError> {
    let (local, domain) = addr_spec.rsplit_once('@').ok_or(AddressError::MissingAt)?;
    check_local_part(local)?;
    let domain = normalize_domain(domain)?;
    // SPEC §1 lowercases the whole address, the local part included, although RFC 5321
    // §2.4 lets a server treat it as case-sensitive: one customer, one identity.
    let address = format!("{}@{}", local.to_ascii_lowercase(), domain);
    if address.len() > ADDRESS_LIMIT {
        return Err(AddressError::TooLong);
    }
    Ok(EmailAddress(address))
}

/// RFC 5321 §4.1.2: `Local-part = Dot-string / Quoted-string`, at most 64 octets.
fn check_local_part(local: &str) -> Result<(), AddressError> {
    if !local.is_ascii() {
        return Err(AddressError::NonAsciiLocalPart);
    }
    if local.len() > LOCAL_PART_LIMIT {
        return Err(AddressError::LocalPartTooLong);
    }
    let valid = if local.starts_with('"') {
        is_quoted_string(local)
    } else {
        // Dot-string: atoms of atext joined by single dots, none at either end.
        local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
    };
    if valid {
        Ok(())
    } else {
        Err(AddressError::InvalidLocalPart)
    }
}

/// RFC 5321 §4.1.2 `Quoted-string`: printable ASCII and space between double quotes, with
/// `\` escaping one printable character. An empty one (`""`) is refused: no customer has it.
fn is_quoted_string(local: &str) -> bool {
    let Some(inner) = local.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    let mut bytes = inner.bytes();
    let mut any = false;
    while let Some(byte) = bytes.next() {
        any = true;
        match byte {
            // quoted-pairSMTP = %d92 %d32-126
            b'\\' if matches!(bytes.next(), Some(32..=126)) => {}
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126
            b'"' | b'\\' => return false,
            32..=126 => {}
            _ => return false,
        }
    }
    any
}

/// RFC 5321 §4.1.2 / RFC 5322 §3.2.3 `atext`.
fn is_atext(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&byte)
}

/// Lowercases the domain, converts IDN labels to punycode and checks the result is a
/// host name of at least two LDH labels (RFC 1035 §2.3.1, RFC 5890 §2.3.1).
fn normalize_domain(domain: &str) -> Result<String, AddressError> {
    // RFC 5321 §4.1.3 address literals: we mail customers, not hosts.
    if domain.starts_with('[') {
        return Err(AddressError::DomainLiteral);
    }
    if domain.is_empty() {
        return Err(AddressError::InvalidDomain);
    }
    // UTS #46 processing: maps case and full-width dots, validates and punycodes labels.
    let ascii = idna::domain_to_ascii(domain).map_err(|_| AddressError::InvalidDomain)?;
    let ascii = ascii.to_ascii_lowercase();
    if ascii.len() > DOMAIN_LIMIT {
        return Err(AddressError::TooLong);
    }
    if ascii.parse::<Ipv4Addr>().is_ok() {
        return Err(AddressError::DomainLiteral);
    }
    let mut labels = 0;
    let mut last = "";
    for label in ascii.split('.') {
        // An empty label is a leading, doubled or trailing dot; the trailing (root) dot
        // is rejected rather than stripped (see the module doc).
        if !is_ldh_label(label) {
            return Err(AddressError::InvalidDomain);
        }
        labels += 1;
        last = label;
    }
    // `bob@localhost` is not reachable from the internet; a top-level domain is never
    // all digits (RFC 3696 §2), which also rules out other numeric host forms.
    if labels < 2 || last.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(AddressError::InvalidDomain);
    }
    Ok(ascii)
}

/// RFC 1035 §2.3.1 as relaxed by RFC 1123 §2.1: 1–63 letters, digits and hyphens, not
/// starting or ending with a hyphen.
fn is_ldh_label(label: &str) -> bool {
    (1..=LABEL_LIMIT).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// Parses what precedes `<`: nothing, one quoted string, or plain words (RFC 5322 §3.4
/// `display-name`, with obs-phrase dots and RFC 6532 UTF-8 allowed). Blank gives `None`.
fn parse_display_name(raw: &str) -> Result<Option<String>, AddressError> {
    let raw = raw.trim();
    let name = match raw.strip_prefix('"') {
        Some(quoted) => unquote(quoted).ok_or(AddressError::InvalidDisplayName)?,
        // RFC 5322 §3.2.3 specials other than `.` need quoting; `,;<>` never get here.
        None if raw.contains(['(', ')', '[', ']', ':', '@', '\\', '"']) => {
            return Err(AddressError::InvalidDisplayName);
        }
        None => raw.to_owned(),
    };
    let name = name.trim();
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// Unescapes the rest of a quoted string after its opening quote; `None` unless the
/// closing quote is the last character.
fn unquote(quoted: &str) -> Option<String> {
    let mut name = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => name.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(name),
            c => name.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The normalized address and display name, or the error.
    type Expected<'a> = Result<(&'a str, Option<&'a str>), AddressError>;

    fn check(input: &str, expected: Expected<'_>) {
        let mailbox = ParsedMailbox::parse(input);
        let actual = mailbox
            .as_ref()
            .map(|mailbox| (mailbox.address.as_str(), mailbox.display_name.as_deref()))
            .map_err(|error| *error);
        assert_eq!(actual, expected, "input: {input:?}");
        // EmailAddress::parse is the same parse without the name.
        let address = EmailAddress::parse(input);
        let address = address
            .as_ref()
            .map(EmailAddress::as_str)
            .map_err(|error| *error);
        assert_eq!(
            address,
            actual.map(|(address, _)| address),
            "input: {input:?}"
        );
    }

    fn ok(address: &str) -> Expected<'_> {
        Ok((address, None))
    }

    fn named<'a>(address: &'a str, name: &'a str) -> Expected<'a> {
        Ok((address, Some(name)))
    }

    #[test]
    fn good_addresses_are_normalized() {
        let long_local = format!("{}@example.com", "a".repeat(64));
        // 64 + 1 + 189 = 254 octets, the RFC 5321 maximum.
        let longest = format!(
            "{}@{}.{}.{}",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        let table: Vec<(&str, Expected)> = vec![
            ("bob@example.com", ok("bob@example.com")),
            ("  Bob@Example.COM \t", ok("bob@example.com")),
            (
                "first.last+tag@sub.example.co.uk",
                ok("first.last+tag@sub.example.co.uk"),
            ),
            ("o'brien@example.com", ok("o'brien@example.com")),
            (
                "!#$%&'*+-/=?^_`{|}~@example.com",
                ok("!#$%&'*+-/=?^_`{|}~@example.com"),
            ),
            ("\"John Doe\"@Example.com", ok("\"john doe\"@example.com")),
            ("\"a@b,c<d>\"@example.com", ok("\"a@b,c<d>\"@example.com")),
            ("\"a\\\"b\"@example.com", ok("\"a\\\"b\"@example.com")),
            ("bob@my-host.example.com", ok("bob@my-host.example.com")),
            ("bob@123.example", ok("bob@123.example")),
            ("bob@Bücher.Example", ok("bob@xn--bcher-kva.example")),
            ("bob@xn--bcher-kva.example", ok("bob@xn--bcher-kva.example")),
            ("bob@例え.テスト", ok("bob@xn--r8jz45g.xn--zckzah")),
            ("bob@example\u{3002}com", ok("bob@example.com")),
            ("Bob <Bob@Example.com>", named("bob@example.com", "Bob")),
            (
                "  Bob Smith   <bob@example.com>  ",
                named("bob@example.com", "Bob Smith"),
            ),
            (
                "Bob J. Smith <bob@example.com>",
                named("bob@example.com", "Bob J. Smith"),
            ),
            (
                "\"Smith, Bob\" <bob@example.com>",
                named("bob@example.com", "Smith, Bob"),
            ),
            (
                "\"Bob \\\"The Builder\\\"\" <bob@example.com>",
                named("bob@example.com", "Bob \"The Builder\""),
            ),
            (
                "\"Bob (Sales)\" <bob@example.com>",
                named("bob@example.com", "Bob (Sales)"),
            ),
            (
                "Jürgen Müller <jm@müller.de>",
                named("jm@xn--mller-kva.de", "Jürgen Müller"),
            ),
            ("<bob@example.com>", ok("bob@example.com")),
            ("Bob< bob@example.com >", named("bob@example.com", "Bob")),
            ("   <bob@example.com>", ok("bob@example.com")),
            ("\"\" <bob@example.com>", ok("bob@example.com")),
            ("\"   \" <bob@example.com>", ok("bob@example.com")),
            (&long_local, ok(&long_local)),
            (&longest, ok(&longest)),
        ];
        for (input, expected) in table {
            check(input, expected);
        }
    }

    #[test]
    fn bad_addresses_are_rejected_with_the_reason() {
        use AddressError::*;
        let long_local = format!("{}@example.com", "a".repeat(65));
        let too_long = format!(
            "{}@{}.{}.{}",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        let long_label = format!("bob@{}.com", "a".repeat(64));
        let huge = "a".repeat(10_000);
        let huge_address = format!("bob@{}.com", "a".repeat(10_000));
        let huge_quotes = "\"".repeat(10_000);
        let table: Vec<(&str, AddressError)> = vec![
            ("", Empty),
            ("   ", Empty),
            (" \t ", Empty),
            ("<>", Empty),
            ("Bob <  >", Empty),
            ("bob@example.com\n", LineBreak),
            ("\r\n", LineBreak),
            ("bob@exa\rmple.com", LineBreak),
            ("\"Bob\r\nBcc: x@y.com\" <bob@example.com>", LineBreak),
            ("\"bob\nx\"@example.com", LineBreak),
            ("bob@example.com\u{2028}", LineBreak),
            ("bob\t@example.com", ControlCharacter),
            ("bob@exam\0ple.com", ControlCharacter),
            ("Bob\tSmith <bob@example.com>", ControlCharacter),
            ("bob\u{7f}@example.com", ControlCharacter),
            (&huge, TooLong),
            (&huge_address, TooLong),
            (&huge_quotes, TooLong),
            (&too_long, TooLong),
            (&long_local, LocalPartTooLong),
            ("a@example.com, b@example.com", MultipleMailboxes),
            ("a@example.com; b@example.com", MultipleMailboxes),
            ("a@example.com b@example.com", MultipleMailboxes),
            ("<a@example.com> <b@example.com>", MultipleMailboxes),
            ("A <a@example.com>, B <b@example.com>", MultipleMailboxes),
            ("Smith, Bob <bob@example.com>", MultipleMailboxes),
            ("Friends: a@example.com, b@example.com;", MultipleMailboxes),
            ("undisclosed-recipients:;", MultipleMailboxes),
            ("bob", MissingAt),
            ("bob.example.com", MissingAt),
            ("Bob <bob>", MissingAt),
            ("a@b@c.com", InvalidLocalPart),
            ("@example.com", InvalidLocalPart),
            (".bob@example.com", InvalidLocalPart),
            ("bob.@example.com", InvalidLocalPart),
            ("bo..b@example.com", InvalidLocalPart),
            ("bob smith@example.com", InvalidLocalPart),
            ("bob(x)@example.com", InvalidLocalPart),
            ("\"\"@example.com", InvalidLocalPart),
            ("\"a\"b@example.com", InvalidLocalPart),
            ("mailto:bob@example.com", InvalidLocalPart),
            ("<@relay.example:bob@example.com>", InvalidLocalPart),
            ("jürgen@example.com", NonAsciiLocalPart),
            ("bob@", InvalidDomain),
            ("Bob <bob@>", InvalidDomain),
            ("bob@localhost", InvalidDomain),
            ("bob@example.com.", InvalidDomain),
            ("bob@.example.com", InvalidDomain),
            ("bob@example..com", InvalidDomain),
            ("bob@-example.com", InvalidDomain),
            ("bob@example-.com", InvalidDomain),
            ("bob@exa_mple.com", InvalidDomain),
            ("bob@example.123", InvalidDomain),
            (&long_label, InvalidDomain),
            ("bob@[192.0.2.1]", DomainLiteral),
            ("bob@[IPv6:2001:db8::1]", DomainLiteral),
            ("bob@192.0.2.1", DomainLiteral),
            ("bob@example.com <bob@example.com>", InvalidDisplayName),
            ("Bob (Sales) <bob@example.com>", InvalidDisplayName),
            ("Bob \"B\" Smith <bob@example.com>", InvalidDisplayName),
            ("\"Bob\" Smith <bob@example.com>", InvalidDisplayName),
            ("\"Bob <bob@example.com>", Malformed),
            ("Bob <bob@example.com", Malformed),
            ("Bob bob@example.com>", Malformed),
            ("bob@example.com>", Malformed),
            ("<bob@example.com> Bob", Malformed),
            ("<<bob@example.com>>", Malformed),
        ];
        for (input, error) in table {
            check(input, Err(error));
        }
    }

    #[test]
    fn accessors_split_at_the_last_at_sign() {
        let address = EmailAddress::parse("\"a@b\"@Bücher.Example").expect("valid");
        assert_eq!(address.local_part(), "\"a@b\"");
        assert_eq!(address.domain(), "xn--bcher-kva.example");
        assert_eq!(address.to_string(), "\"a@b\"@xn--bcher-kva.example");
        assert_eq!(
            serde_json::to_string(&address).expect("serializes"),
            r#""\"a@b\"@xn--bcher-kva.example""#
        );
    }

    #[test]
    fn raw_input_is_trimmed_and_cut_on_a_char_boundary() {
        assert_eq!(
            EmailAddress::raw_input("  not an address \n"),
            "not an address"
        );
        let long = format!("a{}", "é".repeat(400));
        let raw = EmailAddress::raw_input(&long);
        assert_eq!(raw.len(), RAW_INPUT_LIMIT - 1);
        assert!(long.starts_with(&raw));
        assert_eq!(EmailAddress::raw_input("short"), "short");
    }

    #[test]
    fn every_error_has_a_message() {
        assert_eq!(
            AddressError::LineBreak.to_string(),
            "it contains a line break, which is never accepted"
        );
        assert!(!AddressError::MultipleMailboxes.to_string().is_empty());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_is_idempotent(input in any::<String>()) {
            assert_idempotent(&input)?;
        }

        #[test]
        fn address_like_input_is_idempotent(
            // About a third of these parse; the rest exercise the error paths nearby.
            input in "( ?(Bob|\"Smith, B\\\\\"ob\")? ?<)?(\"[ a-zA-Z,@<>.]{1,6}\"|[A-Za-z0-9+_.-]{1,8})@[A-Za-zÜü0-9.-]{1,12}\\.[A-Za-zü]{2,4}>?"
        ) {
            assert_idempotent(&input)?;
        }
    }

    fn assert_idempotent(input: &str) -> Result<(), TestCaseError> {
        if let Ok(address) = EmailAddress::parse(input) {
            let normalized = address.as_str();
            prop_assert!(normalized.len() <= ADDRESS_LIMIT);
            prop_assert!(normalized.is_ascii());
            prop_assert!(!normalized.bytes().any(|byte| byte.is_ascii_uppercase()));
            prop_assert_eq!(EmailAddress::parse(normalized), Ok(address.clone()));
        }
        Ok(())
    }
}
