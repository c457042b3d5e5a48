// Readiness for systemd: with `Type=notify`, systemd sets NOTIFY_SOCKET and
// counts the service as started only when it is told READY=1, so units
// ordered after ferry (and `systemctl start ferry`) wait until the daemon
// listens, not merely until the process exists.
//
// The notify socket is a Unix datagram socket, and Node has none (`dgram`
// is UDP only, `net` speaks streams, which a datagram socket refuses), so the
// message goes through `systemd-notify`, which ships with systemd wherever
// NOTIFY_SOCKET can be set. It is a child of the daemon, not its main
// process, hence `NotifyAccess=all` in the unit. When it may, systemd-notify
// sends with the daemon's pid; otherwise with its own, and then waits until
// systemd has read the message (a barrier) before it exits, so the message is
// not lost when it exits first (systemd(1) >= 246).
//
// Owns: NOTIFY_SOCKET. It is taken out of the environment at once, so no hook
// or other child can speak for the daemon. Must never: throw, or hold the
// daemon up (a failed notification is reported, and the daemon runs on).
import { spawn } from 'node:child_process';

/** A failed notification gives up after this long (systemd-notify's own barrier waits up to 5 s). */
const NOTIFY_TIMEOUT_MS = 15_000;

export class SystemdNotifier {
  readonly socket: string;
  constructor(socket: string) {
    this.socket = socket;
  }

  /** Send `args` (systemd-notify's: --ready, --status=..., KEY=VALUE); resolves null when sent, else why not. Never rejects. */
  send(args: string[]): Promise<string | null> {
    return new Promise((resolve) => {
      let err = '';
      let done = false;
      const finish = (why: string | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(why);
      };
      const child = spawn('systemd-notify', args, { env: { ...process.env, NOTIFY_SOCKET: this.socket }, stdio: ['ignore', 'ignore', 'pipe'] });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(`systemd-notify did not finish within ${NOTIFY_TIMEOUT_MS / 1000} s`);
      }, NOTIFY_TIMEOUT_MS);
      timer.unref();
      child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-1000)));
      child.once('error', (e) => finish(`cannot run systemd-notify (it comes with systemd): ${e.message}`));
      child.once('close', (code, signal) => finish(code === 0 ? null : `systemd-notify ${args.join(' ')} exited ${code ?? signal}: ${err.trim() || 'no message'}`));
    });
  }

  /** The daemon listens: systemd may count it started. */
  ready(status: string): Promise<string | null> {
    return this.send(['--ready', `--status=${status}`]);
  }

  /** The daemon is stopping (shown by `systemctl status` until it exits). */
  stopping(status: string): Promise<string | null> {
    return this.send(['STOPPING=1', `--status=${status}`]);
  }
}

/**
 * The notifier for this process when systemd started it as a notify service (NOTIFY_SOCKET set),
 * else undefined. NOTIFY_SOCKET is removed from `env` either way, so no child inherits it.
 */
export function takeSystemdNotifier(env: NodeJS.ProcessEnv = process.env): SystemdNotifier | undefined {
  const socket = env.NOTIFY_SOCKET;
  delete env.NOTIFY_SOCKET;
  // A path, an abstract socket (@name) or, with newer systemd, vsock:...: systemd-notify knows them all.
  return socket ? new SystemdNotifier(socket) : undefined;
}
