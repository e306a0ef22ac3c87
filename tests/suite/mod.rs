//! The test modules, one per area.

mod api_admin;
mod api_hostile;
mod api_ingest;
mod bounce_door;
mod bounce_notices;
mod bounces;
mod cli;
mod config;
mod crash;
mod dashboard;
mod deliverability;
mod delivery;
mod delivery_direct;
mod durability;
mod engines;
mod hardening;
mod load;
mod metrics;
mod openapi;
mod peers_smoke;
mod readme;
mod retention;
mod webhooks;
