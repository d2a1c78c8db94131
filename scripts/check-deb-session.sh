#!/bin/sh
# The README's install steps, taken on the package itself: its files laid
# over /usr and a real `systemd --user` manager, both in a private mount
# namespace (so the machine's own /usr and /run/systemd stay as they are),
# then `systemctl --user enable --now hopward.socket`, `eval "$(hopward
# env)"`, `ssh-add` and `ssh-add -l`, as a new user would; where the kernel
# allows io_uring, the daemon must have answered through it. Needs root (or
# passwordless sudo) for the namespace.
#   scripts/check-deb-session.sh DEB
set -eu
deb=$1
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scripts=$(cd "$(dirname "$0")" && pwd)
dpkg-deb -x "$deb" "$work/root"
mkdir -p "$work/home" "$work/run"
chmod 700 "$work/run"
# shellcheck disable=SC2016 # expanded inside the namespace
$SUDO unshare -m env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    ROOT="$work/root" HOME="$work/home" XDG_RUNTIME_DIR="$work/run" SCRIPTS="$scripts" sh -euc '
mount -t overlay overlay -o "lowerdir=$ROOT/usr:/usr" /usr
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/system   # "booted with systemd", in this namespace only
export HOME XDG_RUNTIME_DIR
/lib/systemd/systemd --user >"$HOME/manager.log" 2>&1 &
manager=$!
trap "systemctl --user exit 2>/dev/null || kill $manager; wait $manager || true" EXIT
i=0
until systemctl --user is-system-running >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 500 ] || { echo "no user manager"; cat "$HOME/manager.log"; exit 1; }
    sleep 0.02
done
# The README, step by step.
systemctl --user enable --now hopward.socket
eval "$(hopward env)"
ssh-keygen -q -t ed25519 -N "" -C readme-key -f "$HOME/id_ed25519"
ssh-add -q "$HOME/id_ed25519"
listed=$(ssh-add -l)
echo "$listed" | grep -q "readme-key (ED25519)" || { echo "ssh-add -l: $listed"; exit 1; }
systemctl --user show-environment | grep -qx "SSH_AUTH_SOCK=$SSH_AUTH_SOCK" ||
    { echo "the user manager has no SSH_AUTH_SOCK for the session"; exit 1; }
[ "$(systemctl --user is-active hopward.service)" = active ] ||
    { echo "hopward.service is not active"; journalctl --user -u hopward 2>/dev/null | tail -5; exit 1; }
# Where this kernel lets a process (here root, as the daemon) make an
# io_uring ring with what the daemon needs (send and receive, Linux 5.6;
# the queue heads in fdinfo, 5.16), the unit must let the daemon answer
# ssh-add -l through one (crates/hopward-sys/src/ring.rs): its submission
# queue has moved, a reply and a take for each answer (ssh-add writes the
# length of a request and its body in two calls; the daemon waits for both).
set -- $(uname -r | tr ".-" "  ")
if [ "$1" -lt 5 ] || { [ "$1" -eq 5 ] && [ "$2" -lt 16 ]; }; then
    echo "io_uring not checked: Linux $1.$2 predates what this check reads" >"$HOME/ring"
elif ! "$SCRIPTS/io-uring-allowed.sh"; then
    echo "this kernel refuses io_uring, so answered without it" >"$HOME/ring"
else
    pid=$(systemctl --user show -p MainPID --value hopward.service)
    submitted=0
    for fd in /proc/"$pid"/fd/*; do
        case $(readlink "$fd") in
            *io_uring*)
                n=$(sed -n "s/^SqHead:[[:space:]]*//p" /proc/"$pid"/fdinfo/"${fd##*/}" 2>/dev/null || true)
                submitted=$((submitted + ${n:-0})) ;;
        esac
    done
    [ "$submitted" -ge 2 ] ||
        { echo "hopward.service answered without io_uring, which this kernel allows (its SystemCallFilter?)"; exit 1; }
    echo "answered through io_uring" >"$HOME/ring"
fi
systemctl --user stop hopward.socket hopward.service
for unit in hopward.socket hopward.service; do
    state=$(systemctl --user show -p ActiveState,Result --value $unit | sort | paste -sd, -)
    [ "$state" = "inactive,success" ] || { echo "$unit after stop: $state"; exit 1; }
done
'
echo "check-deb-session.sh: $(basename "$deb"): enabled, ssh-add worked through /usr/bin/hopward under systemd --user ($(cat "$work/home/ring")), stopped clean"
