//! mailtrail: records every customer-account email decision of a service desk, delivers
//! the emails, suppresses addresses after permanent failures, and answers "why did this
//! customer get no invite?". See ARCHITECTURE.md for the map.

// Bad input is an error value, never a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod rules;
pub mod model;
pub mod messages;
pub mod why;
pub mod store;
pub mod delivery;
pub mod http;
pub mod cli;
pub mod config;
pub mod commands;
pub mod demo;
pub mod password;
pub mod bench;
