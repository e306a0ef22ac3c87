//! The test modules, one per area.

mod peers_smoke;
mod api_admin;
mod api_hostile;
mod api_ingest;
mod cli;
mod durability;
mod bounces;
mod crash;
mod delivery;
mod delivery_direct;
mod dashboard;
