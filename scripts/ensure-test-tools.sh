#!/bin/sh
# Part of `npm test`: Debian packages some tests need, installed when missing and
# we may (root, apt-get); otherwise it says what to do, and those tests fail (or
# skip) with the same advice.
#   chromium   the dashboard's browser test (test/integration/dashboard.test.ts)
#              drives it with playwright-core (never `playwright install`: browser
#              downloads are not reachable here)
#   attr, acl  getfattr/setfattr, which ferry itself uses for extended attributes
#              and POSIX ACLs, and getfacl/setfacl, which the tests use to make
#              and check ACLs (preservation, replication-kinds, xattrs tests)
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
{ command -v getfattr && command -v setfattr; } >/dev/null 2>&1 || missing="$missing attr"
{ command -v getfacl && command -v setfacl; } >/dev/null 2>&1 || missing="$missing acl"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's$missing for the tests ..." >&2
  # shellcheck disable=SC2086 # one word per package
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >&2 && exit 0
fi
echo "note: not installed:$missing; the tests that need them will fail or skip: apt-get install$missing" >&2
exit 0
