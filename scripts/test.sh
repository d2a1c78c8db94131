#!/bin/sh
# The whole test suite, on a fresh Debian machine with the Rust toolchain:
# installs what the tests need, then runs formatting, lint and every test.
# Run as root, or as a user with passwordless sudo.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi

# Programs the tests drive for real.
packages="openssh-client openssh-server openssh-tests gdb make systemd python3 dbus man-db"
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

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --all-targets
# Once more, after every other test has left its logs: nothing secret in them.
cargo test --locked --test zz_leak_scan
