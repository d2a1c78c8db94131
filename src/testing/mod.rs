//! What the integration tests and fuzz targets use from the library, behind
//! the `testing` feature so that nothing of it ships.

pub mod fakes;
#[cfg(feature = "testing")]
pub mod fuzz;
#[cfg(feature = "testing")]
pub mod sshd_userauth;
