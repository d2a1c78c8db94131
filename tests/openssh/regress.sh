#!/bin/sh
# Runs scripts from OpenSSH's own regression suite (Debian package
# openssh-tests) against an agent given as $1, as the current (non-root) user.
#
#   tests/openssh/regress.sh AGENT_WRAPPER WORKDIR TEST...
#
# Key types left out of the stock suite, by one filter on its key-type lists
# (FILTER below), nothing else changed:
#  - ssh-dss: DSA is disabled by default in OpenSSH and hopward does not
#    implement it.
# FIDO key types stay in: the suite's test provider sk-dummy.so is in place,
# so the suite starts the agent with -P/* as it starts ssh-agent, and
# hopward signs with those keys through it.
# sshd runs as the test user (SUDO is empty), which the suite supports.
set -eu
agent=$1; work=$2; shift 2
[ -x /usr/lib/openssh/regress/run-tests ] || { echo "regress.sh: openssh-tests is not installed" >&2; exit 1; }
[ "$(id -u)" != 0 ] || { echo "regress.sh: must run as a non-root user" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"
cp -a /usr/lib/openssh/regress "$work/regress"
FILTER='grep -Ev "^ssh-dss$"'
sed -i "s/^\(SSH_KEYTYPES\|SSH_HOSTKEY_TYPES\)=\`\\\$SSH -Q key-plain | maybe_filter_sk\`\$/\1=\`\$SSH -Q key-plain | maybe_filter_sk | $FILTER\`/" \
    "$work/regress/test-exec.sh"
[ "$(grep -cF "maybe_filter_sk | $FILTER" "$work/regress/test-exec.sh")" = 2 ] \
    || { echo "regress.sh: could not filter the key types ($FILTER)" >&2; exit 1; }
[ -f "$work/regress/misc/sk-dummy/sk-dummy.so" ] \
    || { echo "regress.sh: the suite's FIDO provider sk-dummy.so is missing" >&2; exit 1; }
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
