// Examples for the main commands, keyed by command path ("mirror update").
// One list serves `--help` (after the options), the man page's EXAMPLES and
// its per-command sections; a test parses every example with the real
// program, so an example cannot name an option or a command that is gone.

export interface Example {
  /** the command line, starting with `ferry` */
  cmd: string;
  /** what it does, in a few words */
  what: string;
}

export const EXAMPLES: Readonly<Record<string, readonly Example[]>> = {
  init: [{ cmd: 'ferry init --name site-a --home /var/lib/ferry', what: 'create a site; prints the id its peers pin' }],
  'volume create': [
    { cmd: 'ferry volume create app --member /srv/app --keep-last 10 --keep-daily 30', what: 'one directory, with retention' },
    { cmd: "ferry volume create db --member data=tree:/srv/db --member wal=image:/dev/vdb --pre 'fsfreeze -f /srv/db' --post 'fsfreeze -u /srv/db'", what: 'a consistency group of two members, quiesced by hooks' },
  ],
  'snapshot create': [{ cmd: 'ferry snapshot create app --name before-upgrade', what: 'a named snapshot, between the pre and post hooks' }],
  'snapshot diff': [{ cmd: 'ferry snapshot diff app before-upgrade latest', what: 'what changed since, from the Merkle trees' }],
  restore: [{ cmd: 'ferry restore app --snapshot before-upgrade --target /tmp/app-restored', what: 'a whole snapshot into a new directory' }],
  serve: [
    { cmd: 'ferry serve --listen 0.0.0.0:7420 --metrics 127.0.0.1:9420', what: 'the daemon, with Prometheus metrics on loopback' },
    { cmd: 'ferry serve --config /etc/ferry/ferry.yaml --log-file /var/log/ferry/ferry.log', what: 'with a site file elsewhere (re-read on SIGHUP) and a log file' },
  ],
  'site add': [{ cmd: 'ferry site add site-b https://b.example:7420 --id R327-FMIE-WVEA-FA5X', what: "pair with site-b, pinning its id (from `ferry info` there)" }],
  'mirror create': [{ cmd: 'ferry mirror create app --to site-b --schedule 15m --min-delay 5m --max-delay 1h', what: 'mirror app to site-b every 15 minutes' }],
  'mirror initialize': [{ cmd: 'ferry mirror initialize app --to site-b --wait', what: 'send the baseline and wait until it is applied' }],
  'mirror update': [{ cmd: 'ferry mirror update app --snapshot nightly --wait', what: 'send an existing (application-consistent) snapshot now' }],
  status: [
    { cmd: 'ferry status', what: 'every volume and mirror: state, health, lag, last transfer' },
    { cmd: 'ferry status --watch 5 --json', what: 'one JSON document every 5 seconds, for scripts' },
  ],
  events: [{ cmd: 'ferry events --since 1h --kind mirror. --site all', what: "the last hour's mirror events of every site, merged" }],
  failover: [{ cmd: 'ferry failover app --dry-run', what: 'at the secondary: print the plan, then run it without --dry-run' }],
  failback: [{ cmd: 'ferry failback app', what: 'at the old primary: keep its writes, resync only the differences' }],
  migrate: [{ cmd: 'ferry migrate app --to site-b', what: 'planned switchover with no data loss' }],
  'config check': [{ cmd: 'ferry config check /etc/ferry/ferry.yaml', what: 'every error at once, with its line' }],
  'config apply': [{ cmd: 'ferry config apply --dry-run', what: 'the plan for <home>/ferry.yaml (or $FERRY_CONFIG), applied nothing' }],
  'config export': [{ cmd: 'ferry config export --output', what: 'write the current state to the site file the daemon reads' }],
  'link create': [{ cmd: 'ferry link create /srv/app-test --volume app --schedule 1d', what: 'a writable test copy of the latest snapshot, refreshed daily' }],
  completion: [
    { cmd: 'ferry completion bash > /etc/bash_completion.d/ferry', what: 'bash, for every user' },
    { cmd: 'ferry completion fish > ~/.config/fish/completions/ferry.fish', what: 'fish, for one user' },
  ],
  help: [{ cmd: 'ferry help --man | man -l -', what: 'the manual page, generated from this command line' }],
};

/** The examples as `--help` shows them after the options. */
export function examplesHelpText(examples: readonly Example[]): string {
  return `\nExample${examples.length > 1 ? 's' : ''}:\n${examples.map((e) => `  $ ${e.cmd}\n      ${e.what}`).join('\n')}\n`;
}
