#!/bin/sh
# Part of `npm test`: the dashboard's browser test (test/integration/dashboard.test.ts)
# drives Debian's Chromium with playwright-core (never `playwright install`: browser
# downloads are not reachable here). Install it when it is missing and we may (root,
# apt-get); otherwise say what to do, and the browser test fails with the same advice.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the dashboard's browser test ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2 && exit 0
fi
echo "note: chromium is not installed; the dashboard's browser test will fail: apt-get install chromium" >&2
exit 0
