//! Keys held by the agent: the keystore, shielded private keys, signing, and
//! the helper processes for FIDO tokens and PKCS#11 providers.

pub mod askpass_env;
pub mod expiry;
pub mod keystore;
pub(crate) mod mldsa;
pub mod pkcs11;
pub(crate) mod shield;
pub mod sign;
pub mod sk;
