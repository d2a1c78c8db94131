//! Malformed and hostile frames: each gets the documented treatment, and the
//! daemon stays up and keeps serving other connections.

mod common;

use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::time::Duration;

use common::*;

const FAILURE: u8 = 5;
const IDENTITIES_ANSWER: u8 = 12;

/// A fresh connection still gets an answer to "list identities".
#[track_caller]
fn still_serving(agent: &mut Daemon) {
    assert!(agent.alive(), "daemon died; log:\n{}", agent.log_text());
    let mut s = agent.connect();
    let reply = request(&mut s, &[11]);
    assert_eq!(reply[0], IDENTITIES_ANSWER);
}

/// Whether the server closed the connection (read returns EOF).
fn closed_by_server(s: &mut std::os::unix::net::UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(0))
        || matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[test]
fn zero_length_frame_closes_only_that_connection() {
    let mut agent = Daemon::start();
    let mut bystander = agent.connect();
    let mut s = agent.connect();
    s.write_all(&[0, 0, 0, 0]).unwrap();
    assert!(closed_by_server(&mut s));
    assert_eq!(request(&mut bystander, &[11])[0], IDENTITIES_ANSWER);
    still_serving(&mut agent);
}

#[test]
fn oversize_frame_is_refused_without_reading_it() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    s.write_all(&((256 * 1024 + 1) as u32).to_be_bytes())
        .unwrap();
    assert!(closed_by_server(&mut s));
    still_serving(&mut agent);
    // Bad input gets a log line: that line is the behaviour here (a
    // malformed request never reaches a decision the audit records), as in
    // the tests below.
    assert!(
        agent.log_text().contains("out of range"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn largest_allowed_frame_is_read_and_answered() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    let mut body = vec![0u8; 256 * 1024];
    body[0] = 13; // a sign request full of garbage
    assert_eq!(request(&mut s, &body), vec![FAILURE]);
    assert_eq!(request(&mut s, &[11])[0], IDENTITIES_ANSWER);
    still_serving(&mut agent);
}

#[test]
fn truncated_frame_then_hangup_is_harmless() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    s.write_all(&[0, 0, 0, 100, 11, 1, 2]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_server(&mut s));
    still_serving(&mut agent);
}

#[test]
fn unknown_type_and_trailing_bytes_fail_but_keep_the_connection() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    assert_eq!(request(&mut s, &[200]), vec![FAILURE]);
    assert_eq!(
        request(&mut s, &[11, 0, 0]),
        vec![FAILURE],
        "trailing bytes"
    );
    assert_eq!(
        request(&mut s, &[13, 0, 0]),
        vec![FAILURE],
        "truncated body"
    );
    assert_eq!(
        request(&mut s, &[27, 0, 0, 0, 3, b'f', b'o', b'o']),
        vec![FAILURE],
        "unknown extension"
    );
    assert_eq!(request(&mut s, &[11])[0], IDENTITIES_ANSWER);
    let log = agent.log_text();
    assert!(log.contains("refused request of type 200"), "{log}");
    assert!(log.contains("trailing bytes"), "{log}");
    still_serving(&mut agent);
}

#[test]
fn two_requests_in_one_write_get_two_replies() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    s.write_all(&[0, 0, 0, 1, 11, 0, 0, 0, 1, 200]).unwrap();
    assert_eq!(read_reply(&mut s)[0], IDENTITIES_ANSWER);
    assert_eq!(read_reply(&mut s), vec![FAILURE]);
    still_serving(&mut agent);
}

#[test]
fn small_and_large_requests_in_one_write_are_answered_in_order() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    // A list, a sign request too large to be looked at before it is read
    // (its key is garbage), then a list again, all in one write.
    let mut sign = vec![13u8];
    sign.extend_from_slice(&6000u32.to_be_bytes());
    sign.extend(std::iter::repeat_n(0x41u8, 6000));
    sign.extend_from_slice(&0u32.to_be_bytes());
    sign.extend_from_slice(&0u32.to_be_bytes());
    let mut bytes = vec![0, 0, 0, 1, 11];
    bytes.extend_from_slice(&(sign.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&sign);
    bytes.extend_from_slice(&[0, 0, 0, 1, 11]);
    s.write_all(&bytes).unwrap();
    assert_eq!(read_reply(&mut s)[0], IDENTITIES_ANSWER);
    assert_eq!(read_reply(&mut s), vec![FAILURE]);
    assert_eq!(read_reply(&mut s)[0], IDENTITIES_ANSWER);
    still_serving(&mut agent);
}

#[test]
fn a_client_that_reads_no_replies_for_a_while_gets_them_all_in_order() {
    let mut agent = Daemon::start();
    let s = agent.connect();
    // Lists (peeked, answered, taken off with the reply) and requests of
    // an unknown type (read the usual way, refused) in a known order, far
    // more replies than the socket holds while the client reads none.
    const REQUESTS: usize = 20_000;
    let unknown = |i: usize| i % 7 == 3;
    let mut bytes = Vec::with_capacity(REQUESTS * 5);
    for i in 0..REQUESTS {
        bytes.extend_from_slice(&[0, 0, 0, 1, if unknown(i) { 200 } else { 11 }]);
    }
    let mut writer = s.try_clone().unwrap();
    let writing = std::thread::spawn(move || writer.write_all(&bytes).unwrap());
    // The agent fills the socket and then waits for room.
    std::thread::sleep(Duration::from_millis(300));
    let mut s = s;
    for i in 0..REQUESTS {
        let reply = read_reply(&mut s);
        if unknown(i) {
            assert_eq!(reply, vec![FAILURE], "reply {i}");
        } else {
            assert_eq!(reply, vec![IDENTITIES_ANSWER, 0, 0, 0, 0], "reply {i}");
        }
    }
    writing.join().unwrap();
    still_serving(&mut agent);
}

#[test]
fn request_sent_one_byte_at_a_time_is_answered() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    // The pauses are what is tested: each byte arrives on its own, so the
    // agent reads the frame in pieces.
    for b in [0u8, 0, 0, 1, 11] {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(read_reply(&mut s)[0], IDENTITIES_ANSWER);
    still_serving(&mut agent);
}

#[test]
fn garbage_key_in_add_request_fails_cleanly() {
    let mut agent = Daemon::start();
    let mut s = agent.connect();
    let mut body = vec![17];
    put_string(&mut body, b"ssh-ed25519");
    put_string(&mut body, &[1; 32]);
    put_string(&mut body, &[2; 64]);
    put_string(&mut body, b"comment");
    assert_eq!(request(&mut s, &body), vec![FAILURE]);
    // A FIDO key cut short after its type name.
    let mut fido = vec![17];
    put_string(&mut fido, b"sk-ssh-ed25519@openssh.com");
    assert_eq!(request(&mut s, &fido), vec![FAILURE]);
    assert!(
        agent.log_text().contains("refused request of type 17"),
        "{}",
        agent.log_text()
    );
    still_serving(&mut agent);
}
