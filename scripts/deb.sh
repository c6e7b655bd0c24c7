#!/usr/bin/env bash
# Builds the Debian package with dpkg-deb: `make deb` calls it after the
# release build. Writes target/debian/wssd_VERSION_ARCH.deb and prints
# its path.
#
#   WSSD_BIN        the binary to package (default target/release/wssd;
#                   the one variable to change if the binary moves)
#   DEB_MAINTAINER  "Name <email>" (default: the author of HEAD)
#
# Needs dpkg-dev (dpkg-shlibdeps) and help2man (the man page wssd(8) is
# generated from the binary's own --help and --version, plus
# scripts/deb/wssd.h2m for signals, exit status and files).
set -euo pipefail
cd "$(dirname "$0")/.."
WSSD_BIN=${WSSD_BIN:-target/release/wssd}
DEB_MAINTAINER=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>')}
here=scripts/deb

test -x "$WSSD_BIN" || { echo "no binary at $WSSD_BIN: build it first" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps help2man fakeroot; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install dpkg-dev help2man fakeroot)" >&2; exit 1; }
done

version=$("$WSSD_BIN" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
out=target/debian
root=$out/wssd_${version}_${arch}
rm -rf "$root"
mkdir -p "$root/DEBIAN"

# The binary, stripped (the release profile keeps line tables for
# backtraces; the package ships none).
install -D -m 0755 "$WSSD_BIN" "$root/usr/bin/wssd"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/wssd"

# Configuration (a conffile: dpkg keeps local changes on upgrade) and the
# systemd units; wssd.socket is installed but not enabled (opt-in:
# docs/operations.md, "Socket activation").
install -D -m 0644 config/installed.toml "$root/etc/wssd/wssd.toml"
install -D -m 0644 systemd/wssd.service "$root/lib/systemd/system/wssd.service"
install -D -m 0644 systemd/wssd.socket "$root/lib/systemd/system/wssd.socket"
# The zero-downtime binary upgrade the postinst runs on a package upgrade
# (and an operator may run by hand; docs/operations.md).
install -D -m 0755 "$here/binary-upgrade" "$root/usr/lib/wssd/binary-upgrade"

# Documentation: compressed, as Debian policy asks.
doc=$root/usr/share/doc/wssd
install -d "$doc"
install -m 0644 "$here/copyright" "$doc/copyright"
for f in README.md docs/operations.md docs/configuration.md docs/security.md docs/client.md; do
  gzip -9n <"$f" >"$doc/$(basename "$f").gz"
done
{
  printf 'wssd (%s) unstable; urgency=medium\n\n' "$version"
  printf '  * Built from git %s.\n\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf ' -- %s  %s\n' "$DEB_MAINTAINER" "$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n >"$doc/changelog.gz"

# wssd(8), generated from the CLI definition through --help (dated by
# the commit, so that a rebuild gives the same page).
install -d "$root/usr/share/man/man8"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) help2man --no-info --section=8 --include="$here/wssd.h2m" \
  --name="pre-fork WebSocket server daemon" "$WSSD_BIN" \
  | gzip -9n >"$root/usr/share/man/man8/wssd.8.gz"

# Maintainer scripts and control files.
for s in postinst prerm postrm; do
  install -m 0755 "$here/$s" "$root/DEBIAN/$s"
done
find "$root/etc" -type f -printf '/%P\n' | sed "s|^/|/etc/|" >"$root/DEBIAN/conffiles"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/debian"
printf 'Source: wssd\n\nPackage: wssd\nArchitecture: any\n' >"$scratch/debian/control"
shlibs=$(cd "$scratch" && dpkg-shlibdeps -O "$OLDPWD/$root/usr/bin/wssd" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$DEB_MAINTAINER|" \
  -e "s|@SIZE@|$size|" -e "s|@SHLIBS@|$shlibs|" "$here/control.in" >"$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
  >"$root/DEBIAN/md5sums"

deb=$out/wssd_${version}_${arch}.deb
fakeroot dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >/dev/null
echo "$deb"
