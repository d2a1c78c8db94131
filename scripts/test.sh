#!/bin/sh
# The whole test suite, on a fresh Debian machine with the Rust toolchain:
# installs what the tests need, then runs formatting, lint and every test.
# Run as root, or as a user with passwordless sudo.
set -eu
cd "$(dirname "$0")/.."

# OpenSSH 10.5's own agent tests, run against hopward when ../shared/openssh-10.5
# (10.5p1 built with its regression suite) sits beside the repository.
OPENSSH105=../shared/openssh-10.5
OPENSSH105_TESTS="agent agent-timeout agent-subprocess agent-getpeereid agent-ptrace agent-restrict agent-pkcs11 agent-pkcs11-restrict agent-pkcs11-cert hostkey-agent cert-file pubkey-priority sshsig"
# Every key type of the suite runs, FIDO security keys included (through its
# sk-dummy.so test provider).

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi

# Programs the tests drive for real (softhsm2 is the PKCS#11 test token,
# libfido2-1 the built-in FIDO provider, gcc builds the faulty FIDO
# providers of tests/security_keys.rs, man-db renders the man pages, gnupg
# and gpg-agent are an upstream agent).
packages="openssh-client openssh-server openssh-tests gdb make systemd python3 dbus man-db gnupg gpg-agent softhsm2 libfido2-1 gcc libc6-dev"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "test.sh: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# sshd on loopback needs its privilege-separation directory.
$SUDO mkdir -p /run/sshd
# A second, unprivileged account: OpenSSH's regression suite refuses root,
# and the peer-uid and ptrace tests need another uid.
id hopwardtest >/dev/null 2>&1 || $SUDO useradd -m -s /bin/sh hopwardtest

# --workspace: the load generator (loadgen/) is a member of its own.
cargo fmt --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Without the testing feature: the layers are private, so dead code shows.
cargo clippy --locked -- -D warnings
# The leak scan at the end reads the logs this run keeps, not an earlier run's.
rm -rf "${CARGO_TARGET_DIR:-target}/tmp/leak-check"
cargo test --locked --workspace --all-targets

if [ -x "$OPENSSH105/regress.sh" ]; then
    echo "test.sh: OpenSSH 10.5 agent suite against hopward (every key type)"
    # Its regress.sh needs root: it creates the test user and installs helpers.
    # The suite's FIDO provider stays in place, so hopward gets -P/* as
    # ssh-agent would.
    $SUDO "$OPENSSH105/regress.sh" target/debug/hopward $OPENSSH105_TESTS
else
    echo "test.sh: OpenSSH 10.5 agent suite NOT RUN: $OPENSSH105 is missing (expected beside the repository)"
fi
# Once more, after OpenSSH's suites have left their logs too: nothing secret
# in them. It fails if the logs it needs are missing.
cargo test --locked --test zz_leak_scan
