#!/bin/sh
# Assembles a shell-less runtime root file system under $ROOT from a Debian build base: the
# named programs, the libraries they and the given extension directories load, every shared
# object of libc6 but its iconv modules (manylinux wheels load librt and libdl stubs by name), and the few files a
# program expects to find (CA bundle, time zones, /etc/services, /tmp, /etc/os-release), and a
# record of every Debian package whose files it holds.
# Usage: ROOT=/rootfs collect-runtime.sh PROGRAM... [-- DIRECTORY_OR_FILE_TO_COPY...]
set -eu
: "${ROOT:?ROOT must name the directory to fill}"
mkdir -p "$ROOT/usr/bin" "$ROOT/usr/lib" "$ROOT/usr/lib64" "$ROOT/etc" "$ROOT/tmp"
chmod 1777 "$ROOT/tmp"
# The merged-/usr layout: programs and the ELF interpreter are looked up through these links.
for d in bin lib lib64 sbin; do [ -e "$ROOT/$d" ] || ln -s "usr/$d" "$ROOT/$d"; done
mkdir -p "$ROOT/usr/sbin"

# Copies one path under $ROOT at its real location (ldd names libraries through the /lib link),
# and, when the path is a symbolic link, the file it points at as well.
copy_real() {
  p=$1
  [ -e "$p" ] || return 0
  dir=$(cd "$(dirname "$p")" && pwd -P)
  cp -a --parents "$dir/$(basename "$p")" "$ROOT"
  if [ -L "$p" ]; then
    target=$(readlink -f "$p")
    cp -a --parents "$target" "$ROOT"
  fi
}

programs=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do programs="$programs $1"; shift; done
[ "${1:-}" = "--" ] && shift
extras="$*"

objects=""
for p in $programs; do
  copy_real "$p"
  objects="$objects $p"
done
for e in $extras; do
  copy_real "$e"
  if [ -d "$e" ]; then objects="$objects $(find "$e" -name '*.so*' -type f)"; fi
done

# Every library any of the objects loads, resolved transitively by ldd itself.
libs=$(for o in $objects; do ldd "$o" 2>/dev/null || true; done \
  | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u)
for l in $libs; do copy_real "$l"; done
for l in $(dpkg -L libc6 libgcc-s1 libstdc++6 2>/dev/null | grep -E '\.so(\.[0-9]+)*$' \
  | grep -v /gconv/ | sort -u); do
  copy_real "$l"
done

for f in /etc/ssl/certs/ca-certificates.crt /etc/services /etc/nsswitch.conf /etc/host.conf \
         /usr/share/zoneinfo /etc/localtime /etc/os-release; do
  copy_real "$f"
done
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"

# The root holds no package database, so scanners would see no Debian package and no distro. Like
# Google's distroless images, it records each package whose files it holds as
# /var/lib/dpkg/status.d/<package> (the fields every scanner reads), with its copyright file.
# dpkg lists files under /lib, /bin and /sbin by their pre-merged-/usr paths: those are compared
# at their real place under /usr.
copied=$(mktemp)
(cd "$ROOT" && find . \( -type f -o -type l \) | sed 's|^\.||' \
  | grep -vxE '/(bin|lib|lib32|lib64|libx32|sbin)' | sort -u) > "$copied"
status="$ROOT/var/lib/dpkg/status.d"
mkdir -p "$status"
for pkg in $(dpkg-query -W -f '${Package}\n'); do
  owned=$(dpkg-query -L "$pkg" 2>/dev/null | sed -E 's#^/(bin|lib|lib32|lib64|libx32|sbin)/#/usr/\1/#' \
    | sort -u | comm -12 - "$copied" | head -n 1)
  [ -n "$owned" ] || continue
  dpkg-query -W -f 'Package: ${Package}\nVersion: ${Version}\nArchitecture: ${Architecture}\n' "$pkg" \
    > "$status/$pkg"
  source=$(dpkg-query -W -f '${source:Package}' "$pkg")
  source_version=$(dpkg-query -W -f '${source:Version}' "$pkg")
  version=$(dpkg-query -W -f '${Version}' "$pkg")
  if [ "$source_version" != "$version" ]; then
    echo "Source: $source ($source_version)" >> "$status/$pkg"
  elif [ "$source" != "$pkg" ]; then
    echo "Source: $source" >> "$status/$pkg"
  fi
  copy_real "/usr/share/doc/$pkg/copyright"
done
rm -f "$copied"
