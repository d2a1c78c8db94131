#!/bin/sh
# The whole test suite, on a fresh Debian machine with the Rust toolchain:
# installs what the tests need, then runs formatting, lint and every test.
# Run as root, or as a user with passwordless sudo.
set -eu
cd "$(dirname "$0")/.."

# OpenSSH 10.5's own agent tests, run against hopward when ../shared/openssh-10.5
# (10.5p1 built with its regression suite) sits beside the repository.
OPENSSH105=${HOPWARD_OPENSSH_105:-../shared/openssh-10.5}
OPENSSH105_TESTS="agent agent-timeout agent-subprocess agent-getpeereid agent-ptrace agent-restrict agent-pkcs11 agent-pkcs11-restrict agent-pkcs11-cert hostkey-agent cert-file pubkey-priority sshsig"
# Every key type of the suite runs, FIDO security keys included (through its
# sk-dummy.so test provider).

# The tests that drive OpenSSH 10.5's own programs. Without the build they
# are left out by name and listed at the end, never passed by skipping;
# tests/test_script.rs fails when a test that needs the build is not named
# here.
OPENSSH105_RUST_TESTS="
cert_expiry::a_certificate_added_by_ssh_add_10_5_goes_at_the_same_time_and_is_audited
mldsa::mldsa_keys_add_list_sign_and_delete_with_openssh_10_5
mldsa::mldsa_certificates_add_list_and_remove_all
mldsa::malformed_or_mismatched_mldsa_keys_are_refused_and_the_agent_goes_on
mldsa::login_with_mldsa_user_keys_and_certificates_to_openssh_10_5
mldsa::mldsa_host_keys_bind_sessions_instead_of_poisoning_them
mldsa::forwarded_agent_through_mldsa_hosts
mldsa::host_certificates_by_and_for_mldsa_keys_bind_sessions
mldsa::hand_made_mldsa_binds_verify_and_forged_halves_poison_the_connection
mldsa::destination_constraints_name_mldsa_host_keys
shielding::no_mldsa_composite_seed_is_readable_in_daemon_memory
ssh_agent_10x::query_extension_answers_ssh_add_10_5
upstream::openssh_10_5s_destination_constraints_hold_through_hopward
upstream_agents::a_fido_key_in_openssh_10_5s_agent_logs_in_through_hopward
"

# The tests of the io_uring path (a reply and its request's removal in one
# system call: crates/hopward-sys/src/ring.rs, src/daemon/socket.rs). A
# kernel with kernel.io_uring_disabled set, or a container whose seccomp
# filter refuses io_uring_setup, gives the daemon no ring: it then writes
# and reads as before, which every other test covers. There these are left
# out by name and listed at the end.
IO_URING_RUST_TESTS="
ring::tests::the_reply_goes_out_and_the_request_comes_off
ring::tests::a_full_socket_leaves_the_reply_to_the_caller
ring::tests::a_client_that_hung_up_is_reported_and_nothing_arrived_is_taken
daemon::socket::tests::a_reply_goes_out_before_its_request_is_taken_off
daemon::socket::tests::a_reply_that_does_not_fit_waits_for_room_and_the_request_still_comes_off
daemon::socket::tests::taking_more_than_arrived_or_writing_to_a_closed_socket_fails
"

# What did not run, and why: printed at the end.
skipped=""
skip() { skipped="$skipped
  $1"; }

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi

# Programs the tests drive for real (softhsm2 is the PKCS#11 test token,
# libfido2-1 the built-in FIDO provider, gcc builds the faulty FIDO
# providers of tests/security_keys.rs, man-db renders the man pages, gnupg
# and gpg-agent are an upstream agent).
packages="openssh-client openssh-server openssh-tests gdb make systemd python3 dbus man-db gnupg gpg-agent softhsm2 libfido2-1 gcc libc6-dev"
# Packaging: dpkg-dev's tools build the .deb, lintian checks it.
packages="$packages dpkg-dev lintian"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "test.sh: installing packages the tests need:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# sshd on loopback needs its privilege-separation directory.
$SUDO mkdir -p /run/sshd
# A second, unprivileged account: OpenSSH's regression suite refuses root,
# and the peer-uid and ptrace tests need another uid.
if ! id hopwardtest >/dev/null 2>&1; then
    echo "test.sh: creating the account hopwardtest (for OpenSSH's suite and the other-uid tests)"
    $SUDO useradd -m -s /bin/sh hopwardtest
fi

# --workspace: the load generator (loadgen/) is a member of its own.
cargo fmt --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Without the testing feature: the layers are private, so dead code shows.
cargo clippy --locked -- -D warnings
# The leak scan at the end reads the logs this run keeps, not an earlier run's.
rm -rf "${CARGO_TARGET_DIR:-target}/tmp/leak-check"
skip_args=""
if [ ! -x "$OPENSSH105/ssh" ]; then
    for t in $OPENSSH105_RUST_TESTS; do
        # Test names inside their target (tests/FILE.rs) are the part after ::.
        skip_args="$skip_args --skip ${t#*::}"
        skip "$t: needs OpenSSH 10.5's programs in $OPENSSH105"
    done
fi
if ! scripts/io-uring-allowed.sh; then
    for t in $IO_URING_RUST_TESTS; do
        skip_args="$skip_args --skip $t"
        skip "$t: this kernel or container refuses io_uring"
    done
fi
# --no-fail-fast: one failing target never hides the others' results.
# shellcheck disable=SC2086
cargo test --locked --workspace --all-targets --no-fail-fast -- --exact $skip_args

if [ -x "$OPENSSH105/regress.sh" ]; then
    echo "test.sh: OpenSSH 10.5 agent suite against hopward (every key type)"
    # Its regress.sh needs root: it creates the test user and installs helpers.
    # The suite's FIDO provider stays in place, so hopward gets -P/* as
    # ssh-agent would.
    $SUDO "$OPENSSH105/regress.sh" target/debug/hopward $OPENSSH105_TESTS
else
    echo "test.sh: OpenSSH 10.5 agent suite NOT RUN: $OPENSSH105 is missing (expected beside the repository)"
    skip "OpenSSH 10.5's agent suite ($OPENSSH105_TESTS): needs $OPENSSH105/regress.sh"
fi

# The Debian package, built as users get it (release build), its file list
# and lintian's verdict checked.
echo "test.sh: building and checking the Debian package"
deb=$(scripts/package.sh deb | tail -n 1)
scripts/check-deb.sh "$deb"
# The README's install steps on that package, under a real systemd --user.
scripts/check-deb-session.sh "$deb"

# Once more, after OpenSSH's suites have left their logs too: nothing secret
# in them. It fails if the logs it needs are missing.
cargo test --locked --test zz_leak_scan

if [ -n "$skipped" ]; then
    echo "test.sh: passed; NOT RUN here:$skipped"
else
    echo "test.sh: passed; every test ran"
fi
