//! Delivery: turns `send` decisions into emails and records what happened (SPEC §4).
//!
//! Pure parts: [`classify`] (the outcome table), [`schedule`] (retries), [`report`] and
//! [`bounces`] (bounce reports). Edges: [`transport`] (file, smarthost, direct), [`smtp`],
//! [`dns`], and the [`worker`] loop. Only this module speaks SMTP.

pub mod bench;
pub mod bounces;
pub mod classify;
pub mod dkim;
pub mod dns;
pub mod notice;
pub mod render;
pub mod report;
pub mod schedule;
pub mod smtp;
pub mod tls;
pub mod transport;
mod transport_spec;
pub mod webhooks;
pub mod worker;

pub use transport_spec::{SmtpTls, TransportSpec};
pub use worker::spawn_worker;
