#!/bin/sh
# Checks a .deb from scripts/package.sh deb: exactly the expected files,
# owned by root, the units pointing at /usr/bin/hopward, the man pages and
# completions those the packaged binary makes, maintainer scripts that
# enable nothing for anyone, and no lintian error.
#
#   scripts/check-deb.sh target/package/hopward_0.1.0-1_amd64.deb
set -eu
deb=${1:?usage: scripts/check-deb.sh DEB}
fail() {
    echo "check-deb.sh: $*" >&2
    exit 1
}
[ -f "$deb" ] || fail "$deb is missing"
for program in dpkg-deb lintian gzip; do
    command -v "$program" >/dev/null 2>&1 || fail "$program is missing (apt-get install dpkg-dev lintian)"
done
work=$(mktemp -d "${TMPDIR:-/tmp}/hopward-check-deb.XXXXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/DEBIAN"

# The file list: fixed paths, plus one man page per page the binary makes.
mkdir "$work/man1"
"$work/root/usr/bin/hopward" man --dir "$work/man1" >/dev/null
{
    for page in "$work"/man1/*; do
        echo "./usr/share/man/man1/$(basename "$page").gz"
    done
    cat <<'EOF'
./usr/bin/hopward
./usr/lib/systemd/user/hopward.service
./usr/lib/systemd/user/hopward.socket
./usr/share/bash-completion/completions/hopward
./usr/share/doc/hopward/changelog.Debian.gz
./usr/share/doc/hopward/copyright
./usr/share/doc/hopward/examples/bastion.toml
./usr/share/doc/hopward/examples/default.toml
./usr/share/doc/hopward/examples/github.toml
./usr/share/doc/hopward/examples/instance-ids.toml
./usr/share/doc/hopward/examples/strict.toml
./usr/share/fish/vendor_completions.d/hopward.fish
./usr/share/man/man5/hopward-policy.5.gz
./usr/share/zsh/vendor-completions/_hopward
EOF
} | sort >"$work/expected"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sort >"$work/actual"
if ! diff -u "$work/expected" "$work/actual" >"$work/diff"; then
    cat "$work/diff" >&2
    fail "the package's files are not the expected ones (- expected, + in the package)"
fi
[ "$(grep -c 'hopward.1.gz$' "$work/actual")" = 1 ] || fail "no hopward.1"
[ "$(grep -c 'man1/' "$work/actual")" -gt 5 ] || fail "too few subcommand pages"
# Every entry root-owned; the binary executable.
dpkg-deb -c "$deb" | awk '$2 != "root/root" {print; bad=1} END {exit bad}' >&2 ||
    fail "files not owned by root"
dpkg-deb -c "$deb" | grep '^-rwxr-xr-x root/root .* ./usr/bin/hopward$' >/dev/null || fail "usr/bin/hopward is not 0755"

# Contents.
grep -qx 'ExecStart=/usr/bin/hopward daemon -D' "$work/root/usr/lib/systemd/user/hopward.service" ||
    fail "hopward.service does not start /usr/bin/hopward"
grep -qx 'ListenStream=%t/hopward/agent.sock' "$work/root/usr/lib/systemd/user/hopward.socket" ||
    fail "hopward.socket listens elsewhere"
grep -qx 'ExecStartPost=-/usr/bin/systemctl --user set-environment SSH_AUTH_SOCK=%t/hopward/agent.sock' \
    "$work/root/usr/lib/systemd/user/hopward.socket" ||
    fail "hopward.socket does not export SSH_AUTH_SOCK to the session"
for page in "$work"/man1/*; do
    gzip -dc "$work/root/usr/share/man/man1/$(basename "$page").gz" | cmp -s - "$page" ||
        fail "$(basename "$page") is not the page the binary makes"
done
gzip -dc "$work/root/usr/share/man/man5/hopward-policy.5.gz" | grep -q '^\.TH HOPWARD-POLICY 5' ||
    fail "hopward-policy.5 is not a section 5 page"
for key in include local forwarded forwarded_unknown forwarded_unverified method command timeout \
    add remove remove_all lock unlock idle on_screen_lock path max_bytes journald socket files ports \
    name keys host via user purpose action remember; do
    gzip -dc "$work/root/usr/share/man/man5/hopward-policy.5.gz" | grep -q "^\.B\(R\)\? \"\?$key = " ||
        fail "hopward-policy.5 does not document $key"
done
for shell in bash zsh fish; do
    case $shell in
        bash) file=usr/share/bash-completion/completions/hopward ;;
        zsh) file=usr/share/zsh/vendor-completions/_hopward ;;
        fish) file=usr/share/fish/vendor_completions.d/hopward.fish ;;
    esac
    "$work/root/usr/bin/hopward" completions $shell | cmp -s - "$work/root/$file" ||
        fail "$file is not what hopward completions $shell prints"
done
gzip -dc "$work/root/usr/share/doc/hopward/changelog.Debian.gz" | head -n 1 | grep -q '^hopward (' ||
    fail "changelog.Debian.gz has no entry"
head -n 1 "$work/root/usr/share/doc/hopward/copyright" |
    grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' ||
    fail "copyright is not machine-readable (DEP-5)"

# Nothing enabled for every user: enable only for a unit that was enabled.
for script in postinst prerm postrm; do
    [ -x "$work/DEBIAN/$script" ] || fail "no $script"
    sh -n "$work/DEBIAN/$script" || fail "$script does not parse"
done
if grep -n 'systemctl\|--global\|deb-systemd-invoke --user \(start\|restart\)' "$work/DEBIAN/postinst" >&2; then
    fail "postinst starts or enables units"
fi
awk '/deb-systemd-helper --user enable/ && !inside {exit 1} /was-enabled/ {inside=1} /^\t*fi$/ {inside=0}' \
    "$work/DEBIAN/postinst" || fail "postinst enables a unit that was not enabled"

# lintian: no errors; the tags it does report (warnings, information) are
# named in the last line. The one expected: initial-upload-closes-no-bugs,
# as the package is not uploaded to Debian, so no ITP bug exists to close.
lintian --fail-on error --info "$deb" >"$work/lintian" 2>"$work/lintian.err" || {
    cat "$work/lintian" "$work/lintian.err" >&2
    fail "lintian reports errors"
}
tags=$(sed -n 's/^\([EWIPX]\): hopward[^:]*: \([^ ]*\).*/\1:\2/p' "$work/lintian" | sort -u | paste -sd, -)
echo "check-deb.sh: $(basename "$deb"): $(wc -l <"$work/actual") files as expected, lintian: no errors${tags:+; tags: $tags}"
