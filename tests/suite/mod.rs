//! The test modules, one per area.

mod api_admin;
mod api_hostile;
mod api_ingest;
mod bounces;
mod cli;
mod crash;
mod dashboard;
mod delivery;
mod delivery_direct;
mod durability;
mod peers_smoke;
mod readme;
