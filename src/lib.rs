//! mailtrail: records every customer-account email decision of a service desk, delivers
//! the emails, suppresses addresses after permanent failures, and answers "why did this
//! customer get no invite?". See ARCHITECTURE.md for the map.

// Bad input is an error value, never a panic: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod bench;
pub mod bounce_door;
pub mod cli;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod http;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod password;
pub mod retention;
pub mod rules;
pub mod store;
pub mod why;
