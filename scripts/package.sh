#!/bin/sh
# Build a Debian package or a release tarball from this checkout:
#
#   scripts/package.sh deb   # target/package/hopward_VERSION-1_ARCH.deb
#   scripts/package.sh tar   # target/package/hopward-VERSION-ARCH-OS.tar.gz,
#                            # and the Homebrew formula and PKGBUILD for it
#
# Both hold the same files: the release binary, the systemd user units, the
# man pages, bash/zsh/fish completions, the example policies, the copyright
# and the changelog. The last line printed is the path of what was built.
#
# Needs: cargo (Rust >= rust-version of Cargo.toml), a C compiler, gzip, tar;
# for deb also dpkg-deb and dpkg-shlibdeps (Debian: apt-get install dpkg-dev).
# HOPWARD_BIN=PATH packages that binary instead of building the release one.
set -eu
cd "$(dirname "$0")/.."

kind=${1:-}
case "$kind" in
    deb | tar) ;;
    *)
        echo "usage: scripts/package.sh deb|tar" >&2
        exit 2
        ;;
esac

need() {
    for program in "$@"; do
        if ! command -v "$program" >/dev/null 2>&1; then
            echo "package.sh: $program is missing ($why)" >&2
            exit 1
        fi
    done
}
why="it builds hopward; install Rust with rustup" need cargo
why="it compresses the man pages and the changelog" need gzip
if [ "$kind" = deb ]; then
    why="Debian: apt-get install dpkg-dev" need dpkg-deb dpkg-shlibdeps dpkg-architecture
else
    why="it makes the tarball" need tar sha256sum
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml" >&2; exit 1; }
out="${CARGO_TARGET_DIR:-target}/package"
mkdir -p "$out"

if [ -n "${HOPWARD_BIN:-}" ]; then
    bin=$HOPWARD_BIN
else
    echo "package.sh: building the release binary" >&2
    cargo build --release --locked --bin hopward >&2
    bin="${CARGO_TARGET_DIR:-target}/release/hopward"
fi
[ -x "$bin" ] || { echo "package.sh: $bin is not an executable" >&2; exit 1; }

# The tree both formats share, under $root.
stage=$(mktemp -d "${TMPDIR:-/tmp}/hopward-package.XXXXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
doc="$root/usr/share/doc/hopward"
umask 022
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd/user" "$root/usr/share/man/man1" \
    "$root/usr/share/man/man5" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
    "$doc/examples"

# The binary, stripped as dh_strip strips.
install -m 755 "$bin" "$root/usr/bin/hopward"
if command -v strip >/dev/null 2>&1; then
    strip --remove-section=.comment --remove-section=.note --strip-unneeded \
        "$root/usr/bin/hopward" 2>/dev/null || strip "$root/usr/bin/hopward"
fi

# The units run the packaged binary.
sed 's#^ExecStart=%h/.cargo/bin/hopward #ExecStart=/usr/bin/hopward #' \
    systemd/hopward.service >"$root/usr/lib/systemd/user/hopward.service"
grep -q '^ExecStart=/usr/bin/hopward daemon -D$' "$root/usr/lib/systemd/user/hopward.service" || {
    echo "package.sh: systemd/hopward.service has no ExecStart= to point at /usr/bin/hopward" >&2
    exit 1
}
install -m 644 systemd/hopward.socket "$root/usr/lib/systemd/user/hopward.socket"
chmod 644 "$root/usr/lib/systemd/user/hopward.service"

# Man pages: the commands' from the binary, the policy file's from man/.
"$root/usr/bin/hopward" man --dir "$root/usr/share/man/man1" >/dev/null
install -m 644 man/hopward-policy.5 "$root/usr/share/man/man5/hopward-policy.5"
find "$root/usr/share/man" -type f -exec chmod 644 {} + -exec gzip -9n {} +

# Completions, from the binary.
"$root/usr/bin/hopward" completions bash >"$root/usr/share/bash-completion/completions/hopward"
"$root/usr/bin/hopward" completions zsh >"$root/usr/share/zsh/vendor-completions/_hopward"
"$root/usr/bin/hopward" completions fish >"$root/usr/share/fish/vendor_completions.d/hopward.fish"

install -m 644 policy/*.toml "$doc/examples/"
install -m 644 packaging/copyright "$doc/copyright"
gzip -9n <packaging/changelog >"$doc/changelog.Debian.gz"
chmod 644 "$doc/changelog.Debian.gz"
find "$root" -type d -exec chmod 755 {} +

if [ "$kind" = deb ]; then
    arch=$(dpkg-architecture -qDEB_HOST_ARCH)
    mkdir -p "$root/DEBIAN" "$stage/debian"
    # dpkg-shlibdeps reads the package's name from debian/control.
    printf 'Source: hopward\n\nPackage: hopward\nArchitecture: any\n' >"$stage/debian/control"
    shlibs=$(cd "$stage" && dpkg-shlibdeps -O root/usr/bin/hopward 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p')
    [ -n "$shlibs" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
    size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
    sed -e "s/@VERSION@/$version-1/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
        -e "s/@DEPENDS@/$shlibs, init-system-helpers (>= 1.52)/" \
        packaging/debian/control >"$root/DEBIAN/control"
    for script in postinst prerm postrm; do
        install -m 755 "packaging/debian/$script" "$root/DEBIAN/$script"
    done
    (cd "$root" && find usr -type f ! -path 'DEBIAN/*' -print0 | sort -z |
        xargs -0 md5sum) >"$root/DEBIAN/md5sums"
    chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    deb="$out/hopward_${version}-1_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
    echo "$deb"
    exit 0
fi

# tar: hopward-VERSION/usr/..., named for the machine it runs on.
case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=macos ;;
    *) os=$(uname -s | tr 'A-Z' 'a-z') ;;
esac
machine=$(uname -m)
[ "$machine" = arm64 ] && machine=aarch64
name="hopward-$version-$machine-$os"
mv "$root" "$stage/hopward-$version"
tarball="$out/$name.tar.gz"
tar -C "$stage" --owner=0 --group=0 --numeric-owner --sort=name -czf "$tarball" "hopward-$version" 2>/dev/null ||
    tar -C "$stage" -czf "$tarball" "hopward-$version"
# The Homebrew formula and the PKGBUILD for every tarball of this version in
# $out, with their checksums filled in.
fill() {
    template=$1
    target=$2
    cp "$template" "$target"
    sed -i.orig "s/@VERSION@/$version/g" "$target"
    for t in "$out"/hopward-"$version"-*.tar.gz; do
        [ -f "$t" ] || continue
        suffix=$(basename "$t" .tar.gz)
        suffix=${suffix#"hopward-$version-"}
        sum=$(sha256sum "$t" | cut -d' ' -f1)
        sed -i.orig "s/@SHA256_$(echo "$suffix" | tr '-' '_')@/$sum/g" "$target"
    done
    rm -f "$target.orig"
}
fill packaging/homebrew/hopward.rb "$out/hopward.rb"
fill packaging/arch/PKGBUILD "$out/PKGBUILD"
echo "package.sh: $out/hopward.rb and $out/PKGBUILD name $(sha256sum "$tarball" | cut -d' ' -f1)" >&2
echo "$tarball"
