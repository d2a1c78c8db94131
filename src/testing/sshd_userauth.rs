//! A second reading of signed data, written from OpenSSH's server and
//! kept apart from hopward's own parser: which bytes sshd would verify a
//! public key signature over, and which account it would log in to. The
//! differential fuzz target holds hopward's classification against it.
//!
//! Where this reading comes from (OpenSSH portable):
//! - auth2.c `input_userauth_request`: user, service and method are read
//!   with `sshpkt_get_cstring`; the user is cut at the first `:` into the
//!   account (`authctxt->user`) and the BSD auth style; only a request for
//!   service `ssh-connection` can be valid.
//! - auth2-pubkey.c `userauth_pubkey`: for method `publickey` or
//!   `publickey-hostbound-v00@openssh.com`, with `have_sig` non-zero, sshd
//!   rebuilds the signed data itself: the session id (as a string, or raw
//!   for a client with the `SSH_OLD_SESSIONID` compat flag), the byte 50,
//!   `user[:style]`, service, method, `have_sig`, the algorithm, the key
//!   blob, and for the hostbound method its host key. Every name goes in
//!   with `sshbuf_put_cstring`, so it holds no NUL; nothing follows.
//! - kex.c: a session id is the exchange hash, 20, 32, 48 or 64 bytes.
//!
//! Deliberately looser than sshd where that only makes the check stronger:
//! any algorithm name in ASCII, any key and host key blob, any non-empty
//! session id in the string form.

/// One way sshd could take the data: the account it logs in to, and
/// whether the session id was raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub account: Vec<u8>,
    pub raw_session_id: bool,
}

/// Every way sshd could take `data` as the signed part of a public key
/// userauth request; empty if none.
pub fn readings(data: &[u8]) -> Vec<Reading> {
    let mut out = Vec::new();
    // The usual form: uint32 length, then the session id.
    if data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len > 0 && data.len() - 4 > len {
            if let Some(account) = after_session_id(&data[4 + len..]) {
                out.push(Reading {
                    account,
                    raw_session_id: false,
                });
            }
        }
    }
    // SSH_OLD_SESSIONID: the session id bytes with no length.
    for len in [20, 32, 48, 64] {
        if data.len() > len {
            if let Some(account) = after_session_id(&data[len..]) {
                out.push(Reading {
                    account,
                    raw_session_id: true,
                });
            }
        }
    }
    out
}

/// The rest of the rebuilt packet, from the message type on; the account.
fn after_session_id(rest: &[u8]) -> Option<Vec<u8>> {
    let mut b = Bytes(rest);
    if b.byte()? != 50 {
        return None;
    }
    let userstyle = b.cstring()?;
    let service = b.cstring()?;
    let method = b.cstring()?;
    let have_sig = b.byte()?;
    let pkalg = b.cstring()?;
    let _pkblob = b.string()?;
    match method {
        b"publickey" => {}
        b"publickey-hostbound-v00@openssh.com" => {
            b.string()?;
        }
        _ => return None,
    }
    if !b.0.is_empty() || have_sig == 0 || service != b"ssh-connection" {
        return None;
    }
    if pkalg.is_empty() || !pkalg.is_ascii() {
        return None;
    }
    // strchr(user, ':'): the account is what comes before the first colon.
    let account = match userstyle.iter().position(|&c| c == b':') {
        Some(colon) => &userstyle[..colon],
        None => userstyle,
    };
    Some(account.to_vec())
}

/// A cursor over SSH wire data, as sshbuf reads it.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        if self.0.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]) as usize;
        if self.0.len() - 4 < len {
            return None;
        }
        let value = &self.0[4..4 + len];
        self.0 = &self.0[4 + len..];
        Some(value)
    }

    /// A string as `sshbuf_put_cstring` writes one: no NUL inside.
    fn cstring(&mut self) -> Option<&'a [u8]> {
        self.string().filter(|s| !s.contains(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }

    fn request(sid: &[u8], raw: bool, user: &[u8], have_sig: u8) -> Vec<u8> {
        let mut d = Vec::new();
        if raw {
            d.extend_from_slice(sid);
        } else {
            string(&mut d, sid);
        }
        d.push(50);
        string(&mut d, user);
        string(&mut d, b"ssh-connection");
        string(&mut d, b"publickey");
        d.push(have_sig);
        string(&mut d, b"ssh-ed25519");
        string(&mut d, b"blob");
        d
    }

    #[test]
    fn reads_what_sshd_rebuilds() {
        let r = readings(&request(&[7; 32], false, b"root:\xff", 1));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].account, b"root");
        let r = readings(&request(&[7; 32], true, b"alice", 2));
        assert_eq!(
            r,
            vec![Reading {
                account: b"alice".to_vec(),
                raw_session_id: true
            }]
        );
        assert!(readings(&request(&[7; 32], false, b"root", 0)).is_empty());
        assert!(readings(&request(&[7; 32], false, b"ro\0ot", 1)).is_empty());
        let mut trailing = request(&[7; 32], false, b"root", 1);
        trailing.push(0);
        assert!(readings(&trailing).is_empty());
    }
}
