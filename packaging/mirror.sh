# packaging/mirror.sh - sourced by packaging scripts: coi_debian_mirror prints
# the Debian mirror to debootstrap from: $COI_DEBIAN_MIRROR, else the first
# URI ending in /debian in the machine's own apt sources (deb822 .sources
# first, then one-line .list entries; other repositories such as
# deb.nodesource.com or a -security mirror are skipped), else
# http://deb.debian.org/debian.
coi_debian_mirror() {
  if [ -n "${COI_DEBIAN_MIRROR:-}" ]; then
    echo "$COI_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' |
        grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
          awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' |
          grep -E '/debian/?$' | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
