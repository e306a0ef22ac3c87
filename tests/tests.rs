//! The integration tests: one binary (as ripgrep does), so the binary under test and the
//! peers are built and linked once. `common` holds the fixtures, `suite` the tests.

mod common;
mod suite;
