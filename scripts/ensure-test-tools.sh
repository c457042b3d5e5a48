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
#   prometheus promtool checks the shipped alerting rules (packaging.test.ts)
#   zsh, fish  parse and run the generated completion scripts (completion.test.ts)
#   groff-base renders the generated manual page (completion.test.ts)
#   python3-jsonschema  an independent JSON Schema validator for the site file's
#              schema (config-schema.test.ts)
#   systemd    systemd-notify, which `ferry serve` runs under Type=notify (systemd.test.ts)
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
{ command -v getfattr && command -v setfattr; } >/dev/null 2>&1 || missing="$missing attr"
{ command -v getfacl && command -v setfacl; } >/dev/null 2>&1 || missing="$missing acl"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v zsh >/dev/null 2>&1 || missing="$missing zsh"
command -v fish >/dev/null 2>&1 || missing="$missing fish"
command -v groff >/dev/null 2>&1 || missing="$missing groff-base"
command -v systemd-notify >/dev/null 2>&1 || missing="$missing systemd"
/usr/bin/python3 -c 'import jsonschema' >/dev/null 2>&1 || missing="$missing python3-jsonschema"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's$missing for the tests ..." >&2
  # The tests need promtool, not a Prometheus server: no service the packages
  # bring is started (policy-rc.d says no, for this install only).
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1
  fi
  # shellcheck disable=SC2086 # one word per package
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >&2
  ok=$?
  [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
  [ "$ok" = 0 ] && exit 0
fi
echo "note: not installed:$missing; the tests that need them will fail or skip: apt-get install$missing" >&2
exit 0
