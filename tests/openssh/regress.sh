#!/bin/sh
# Runs scripts from OpenSSH's own regression suite (Debian package
# openssh-tests) against an agent given as $1, as the current (non-root) user.
#
#   tests/openssh/regress.sh AGENT_WRAPPER WORKDIR TEST...
#
# Two deliberate departures from the stock suite, both about key types that
# hopward does not hold:
#  - sk-dummy.so is removed from the copy, so the suite leaves FIDO (sk-*) keys
#    out: hopward refuses to hold FIDO keys by design.
#  - ssh-dss is filtered from the key types: DSA is disabled by default in
#    OpenSSH and hopward does not implement it.
# sshd runs as the test user (SUDO is empty), which the suite supports.
set -eu
agent=$1; work=$2; shift 2
[ -x /usr/lib/openssh/regress/run-tests ] || { echo "regress.sh: openssh-tests is not installed" >&2; exit 1; }
[ "$(id -u)" != 0 ] || { echo "regress.sh: must run as a non-root user" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"
cp -a /usr/lib/openssh/regress "$work/regress"
rm -f "$work/regress/misc/sk-dummy/sk-dummy.so"
sed -i 's/^SSH_KEYTYPES=`\$SSH -Q key-plain | maybe_filter_sk`$/SSH_KEYTYPES=`$SSH -Q key-plain | maybe_filter_sk | grep -v "^ssh-dss$"`/;
        s/^SSH_HOSTKEY_TYPES=`\$SSH -Q key-plain | maybe_filter_sk`$/SSH_HOSTKEY_TYPES=`$SSH -Q key-plain | maybe_filter_sk | grep -v "^ssh-dss$"`/' \
    "$work/regress/test-exec.sh"
grep -q 'grep -v "^ssh-dss$"' "$work/regress/test-exec.sh" || { echo "regress.sh: could not filter ssh-dss" >&2; exit 1; }
ret=0
make -C "$work/regress" .OBJDIR="$work/regress" .CURDIR="$work/regress" \
    BUILDDIR="$work/regress" OBJ="$work/regress" SUDO= TEST_SHELL=sh \
    TEST_SSH_SSH=ssh TEST_SSH_SFTPSERVER=/usr/lib/openssh/sftp-server \
    TEST_SSH_ECC=yes TEST_SSH_UNSAFE_PERMISSIONS=1 \
    TEST_SSH_SSHAGENT="$agent" t-exec LTESTS="$*" </dev/null || ret=$?
if [ "$ret" -ne 0 ]; then
    for log in failed-regress.log failed-ssh.log failed-sshd.log; do
        [ -e "$work/regress/$log" ] && tail -n 60 "$work/regress/$log"
    done
fi
exit "$ret"
