//! The audit format is a contract with every reader of the file: one
//! record of each event, decision and reason shape, written as the writer
//! writes it, must match `tests/golden/audit.jsonl` byte for byte.
//! `HOPWARD_BLESS=1` rewrites the golden file (review its diff).

use std::sync::Arc;
use std::time::Instant;

use super::coalesce::Coalescer;
use super::file::AuditFile;
use super::{AuditBrake, AuditRecord, Event, Reason, Writer};
use crate::keys::keystore::Gone;
use crate::keys::sk::ProviderRefusal;
use crate::trust::binding::BindError;
use crate::trust::binding::{LoginMismatch, Purpose};
use crate::trust::context::{Destination, HopView, RequestClass, RequestContext};
use crate::trust::peer::{Facts, Peer};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/audit.jsonl");
const TS: &str = "2026-11-22T07:14:03.512Z";

fn peer() -> Arc<Peer> {
    let facts = Facts {
        exe: Some("/usr/bin/ssh".into()),
        ..Facts::default()
    };
    Arc::new(Peer::with_facts(1000, Some(24441), facts))
}

/// A login through a bastion to `deep`, verified.
fn forwarded() -> RequestContext {
    let mut deep = HopView::named("deep", false);
    deep.reported_by = Some("bastion".into());
    RequestContext::of_parts(
        ("SHA256:key", "work"),
        vec![HopView::named("bastion", true), deep],
        Destination::Verified,
        Some("deploy"),
        Purpose::Login,
        &peer(),
    )
}

/// `ssh -J jump host` from this machine, `user:style`, to a host known
/// by a hashed line only.
fn direct_through_jump() -> RequestContext {
    let mut host = HopView::named("", false);
    host.fingerprint = "SHA256:hashedhost".into();
    host.hashed = true;
    let mut ctx = RequestContext::of_parts(
        ("SHA256:key", "work"),
        vec![host],
        Destination::Verified,
        Some("deploy:otp"),
        Purpose::Login,
        &peer(),
    );
    ctx.jump = vec![HopView::named("jump", false)];
    ctx
}

/// An SSHSIG signature on this machine.
fn local() -> RequestContext {
    RequestContext::of_parts(
        ("SHA256:key", "work"),
        Vec::new(),
        Destination::Unbound,
        None,
        Purpose::Git,
        &peer(),
    )
}

/// A login through a bastion that does not belong to the last bind.
fn unverified() -> RequestContext {
    RequestContext::of_parts(
        ("SHA256:key", "work"),
        vec![
            HopView::named("bastion", true),
            HopView::named("deep", false),
        ],
        Destination::Unverified(LoginMismatch::SessionId),
        Some("deploy"),
        Purpose::Login,
        &peer(),
    )
}

fn sign(ctx: &RequestContext, allowed: bool, rule: &str, reason: Reason) -> AuditRecord {
    AuditRecord::sign(ctx, allowed, rule, reason, 12)
}

fn key_event(
    event: Event,
    key: bool,
    class: RequestClass,
    hops: &[HopView],
    (allowed, rule, reason): (bool, &str, Reason),
) -> AuditRecord {
    let key = key.then_some(("SHA256:key", "work"));
    AuditRecord::key_event(event, key, class, hops, &peer(), 12).decided(allowed, rule, reason)
}

/// One record of every shape the agent writes.
fn rule(name: &str) -> Reason {
    Reason::Rule(name.into())
}

fn records() -> Vec<AuditRecord> {
    let fwd = forwarded();
    let bastion = [HopView::named("bastion", true)];
    let direct = [HopView::named("host", false)];
    let mut out = vec![
        sign(&fwd, true, "deep needs a yes", Reason::Confirmed),
        sign(&fwd, true, "ci", Reason::Notified),
        sign(&fwd, true, "prod", Reason::Remembered),
        sign(&fwd, true, "default:forwarded", rule("default:forwarded")),
        sign(&local(), true, "default:local", rule("default:local")),
        sign(&direct_through_jump(), true, "jump ok", rule("jump ok")),
        sign(
            &unverified(),
            false,
            "default:forwarded_unverified",
            rule("default:forwarded_unverified"),
        ),
        sign(&fwd, false, "never through dmz", rule("never through dmz")),
    ];
    for reason in [
        Reason::Refused,
        Reason::ConfirmerFailed,
        Reason::Timeout,
        Reason::NoConfirmer,
        Reason::Flood,
        Reason::Withdrawn,
        Reason::SameLogin,
        Reason::Abandoned,
        Reason::AbandonedAfterAllow,
        Reason::Gone(Gone::Removed),
        Reason::Gone(Gone::Expired),
        Reason::Gone(Gone::Locked),
        Reason::PolicyChanged,
        Reason::GrantsCleared,
        Reason::CertExpired,
    ] {
        out.push(sign(&fwd, false, "deep needs a yes", reason));
    }
    out.push(sign(&fwd, false, "constraint", Reason::Constraint));
    out.push(sign(&fwd, false, "cert-expired", Reason::CertExpired));
    for reason in [Reason::UpstreamRefused, Reason::UpstreamFailed] {
        let mut rec = sign(&fwd, false, "deep needs a yes", reason);
        rec.upstream = true;
        out.push(rec);
    }
    // An upstream signature barred before the upstream was asked.
    for reason in [
        Reason::AgentLocked,
        Reason::BindRefused,
        Reason::UpstreamBindRefused,
    ] {
        let mut rec = key_event(
            Event::Sign,
            true,
            RequestClass::Forwarded,
            &bastion,
            (false, "upstream-barred", reason),
        );
        rec.upstream = true;
        out.push(rec);
    }
    for (reason, provider) in [
        (Reason::TokenFailed, "internal"),
        (
            Reason::ProviderFailed,
            "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
        ),
    ] {
        let mut rec = sign(&fwd, false, "deep needs a yes", reason);
        rec.provider = Some(provider.into());
        out.push(rec);
    }
    for outcome in [
        Reason::Confirmed,
        Reason::Refused,
        Reason::Gone(Gone::Removed),
    ] {
        let allowed = outcome == Reason::Confirmed;
        let reason = Reason::Brake(Box::new(outcome));
        let mut rec = sign(&fwd, allowed, "default:forwarded", reason);
        rec.brake = Some(AuditBrake {
            hosts: 7,
            per: "1m".into(),
            limit: 5,
        });
        out.push(rec);
    }
    let forwarded_class = RequestClass::Forwarded;
    out.extend([
        key_event(
            Event::List,
            true,
            forwarded_class,
            &bastion,
            (false, "hide", rule("hide")),
        ),
        key_event(
            Event::Add,
            true,
            RequestClass::Local,
            &[],
            (true, "default:local", rule("default:local")),
        ),
        key_event(
            Event::Add,
            true,
            forwarded_class,
            &bastion,
            (true, "forwarded.add", Reason::Confirmed),
        ),
        key_event(
            Event::Remove,
            true,
            forwarded_class,
            &bastion,
            (false, "forwarded.remove", rule("forwarded.remove")),
        ),
        key_event(
            Event::RemoveAll,
            false,
            RequestClass::Direct,
            &direct,
            (false, "forwarded.remove_all", Reason::Refused),
        ),
        key_event(
            Event::Lock,
            false,
            RequestClass::Local,
            &[],
            (true, "default:local", rule("default:local")),
        ),
        key_event(
            Event::Unlock,
            false,
            forwarded_class,
            &bastion,
            (false, "forwarded.unlock", Reason::Timeout),
        ),
        key_event(
            Event::Bind,
            false,
            RequestClass::Poisoned,
            &bastion,
            (false, "session-bind", Reason::Bind(BindError::BadSignature)),
        ),
        key_event(
            Event::Connection,
            false,
            forwarded_class,
            &bastion,
            (false, "connection-limit", Reason::OverPerFirstHop(128)),
        ),
        key_event(
            Event::Connection,
            false,
            forwarded_class,
            &bastion,
            (false, "connection-limit", Reason::OverForwarded(512)),
        ),
        key_event(
            Event::Extension,
            false,
            forwarded_class,
            &bastion,
            (false, "forwarded-locked", Reason::ForwardedLocked),
        ),
        key_event(
            Event::Sign,
            true,
            forwarded_class,
            &bastion,
            (false, "forwarded-locked", Reason::ForwardedLocked),
        ),
        // A forwarded `ssh-add -d` of a key the policy hides.
        key_event(
            Event::Remove,
            true,
            forwarded_class,
            &bastion,
            (false, "hide-old-keys", Reason::Rule("hide-old-keys".into())),
        ),
        key_event(
            Event::Remove,
            true,
            RequestClass::Local,
            &[],
            (true, "cert-expired", Reason::CertExpired),
        ),
        key_event(
            Event::Add,
            false,
            forwarded_class,
            &bastion,
            (false, "abandoned", Reason::Abandoned),
        ),
    ]);
    let library = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
    for refusal in [
        ProviderRefusal::Remote(library.into()),
        ProviderRefusal::NotAllowed(library.into()),
        ProviderRefusal::Missing(library.into()),
    ] {
        let reason = Reason::Provider(refusal);
        let mut rec = key_event(
            Event::Add,
            true,
            forwarded_class,
            &bastion,
            (false, "provider", reason),
        );
        rec.provider = Some("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so".into());
        out.push(rec);
    }
    for error in [
        BindError::Malformed("short".into()),
        BindError::AfterAuth,
        BindError::TooMany,
    ] {
        let reason = Reason::Bind(error);
        out.push(key_event(
            Event::Bind,
            false,
            RequestClass::Poisoned,
            &[],
            (false, "session-bind", reason),
        ));
    }
    out
}

/// The line the writer puts in the file for `record` (a refusal goes
/// through shaping and coalescing, an allow takes the fast path).
fn written(record: &AuditRecord) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut writer = Writer {
        journal: None,
        file: AuditFile::new(path.clone(), 1 << 20, || TS.to_string()),
        coalescer: Coalescer::default(),
    };
    writer.take(record, Instant::now());
    writer.write(true);
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn every_record_shape_keeps_its_bytes() {
    let mut text = String::new();
    for mut record in records() {
        record.ts = TS.to_string();
        let line = written(&record);
        assert_eq!(line.lines().count(), 1, "one line per record: {line}");
        text.push_str(&line);
    }
    if std::env::var_os("HOPWARD_BLESS").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN)
        .unwrap_or_else(|e| panic!("cannot read {GOLDEN}: {e} (HOPWARD_BLESS=1 writes it)"));
    for (n, (want, got)) in golden.lines().zip(text.lines()).enumerate() {
        assert_eq!(got, want, "line {} of {GOLDEN} differs", n + 1);
    }
    assert_eq!(text, golden, "{GOLDEN}: a record was added or lost");
}
