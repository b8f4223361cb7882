#!/usr/bin/env bash
# Verifies deploy/systemd/rlaifd.service as installed: the real unit file,
# byte for byte, in a staged root where `cmake --install` put the real rlaifd
# and rlaifctl under usr/bin, so `systemd-analyze verify --root` resolves the
# unit's ExecStart=/usr/bin/rlaifd to the binary built from this tree.
#
#   check_systemd.sh SOURCE_DIR BUILD_DIR
#
# Fails on any verify warning (systemd-analyze exits 0 on unknown keys and
# bad values, so its output must be empty), on an exposure score above 2.0
# from `systemd-analyze security --offline`, on a missing hardening
# directive, and if the check does not catch a deliberately broken copy.
set -euo pipefail
src=$1
build=$2
unit=$src/deploy/systemd/rlaifd.service
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/systemd/system" "$root/etc"
ln -s usr/bin "$root/bin"
cmake --install "$build" --prefix "$root/usr" >/dev/null
[ -x "$root/usr/bin/rlaifd" ] && [ -x "$root/usr/bin/rlaifctl" ] || fail "cmake --install put no rlaifd/rlaifctl in usr/bin"
"$root/usr/bin/rlaifd" version >/dev/null || fail "the installed rlaifd does not run"
cp /usr/bin/kill "$root/usr/bin/kill"                 # ExecReload
cp /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
cp "$unit" "$root/etc/systemd/system/rlaifd.service"

# The sysusers file creates the dedicated user the unit runs as.
touch "$root/etc/passwd" "$root/etc/group"
systemd-sysusers --root="$root" "$src/deploy/systemd/rlaifd.sysusers"
grep -q '^rlaifd:x:[0-9]*:[0-9]*:.*:/var/lib/rlaifd:/usr/sbin/nologin$' "$root/etc/passwd" \
  || fail "sysusers did not create the rlaifd user: $(cat "$root/etc/passwd")"

verify() {  # prints systemd-analyze's complaints; returns non-zero if any
  local out rc=0
  out=$(systemd-analyze verify --root="$root" --man=no rlaifd.service 2>&1) || rc=$?
  [ -n "$out" ] && echo "$out"
  [ $rc -eq 0 ] && [ -z "$out" ]
}
verify || fail "systemd-analyze verify complained about $unit"

exposure=$(systemd-analyze security --offline=yes --root="$root" rlaifd.service 2>&1 | grep 'Overall exposure level' || true)
systemd-analyze security --offline=yes --root="$root" --threshold=20 rlaifd.service >/dev/null 2>&1 \
  || fail "exposure above 2.0: $exposure"

for d in 'User=rlaifd' 'Group=rlaifd' 'StateDirectory=rlaifd' 'ProtectSystem=strict' \
         'NoNewPrivileges=yes' 'Restart=on-failure' 'PrivateTmp=yes' 'CapabilityBoundingSet=' \
         'ExecStart=/usr/bin/rlaifd run --config /etc/rlaifd/config.json' \
         'ExecStartPre=/usr/bin/rlaifd check-config /etc/rlaifd/config.json' \
         'WorkingDirectory=/var/lib/rlaifd'; do
  grep -qx "$d" "$unit" || fail "$unit lacks the line '$d'"
done
# The unit's config path must hold a config whose data_dir is the StateDirectory.
grep -q '"data_dir": "/var/lib/rlaifd"' "$src/configs/production.json" \
  || fail "configs/production.json's data_dir is not the unit's StateDirectory"
"$root/usr/bin/rlaifd" check-config "$src/configs/production.json" >/dev/null \
  || fail "configs/production.json (the template for /etc/rlaifd/config.json) is invalid"

# The check itself must be able to fail: a typo and a missing binary.
sed -i 's/^NoNewPrivileges=yes/NoNewPrivilege=yes/' "$root/etc/systemd/system/rlaifd.service"
if verify >/dev/null; then fail "verify did not catch a misspelt directive"; fi
cp "$unit" "$root/etc/systemd/system/rlaifd.service"
rm "$root/usr/bin/rlaifd"
if verify >/dev/null; then fail "verify did not catch a missing ExecStart binary"; fi

echo "systemd unit ok ($exposure)"
echo "1 passed, 0 failed"
