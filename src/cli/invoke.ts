// Run a site operation: through the local daemon's socket when a daemon
// holds the site, otherwise in this process (taking the site lock for the
// duration). Either way the same operation code runs (app/ops.ts).
import { existsSync, readFileSync } from 'node:fs';
import { FerryError, isErrorCode, type FerryErrorJSON } from '../core/errors.ts';
import type { TransferProgress } from '../replication/sender.ts';
import { daemonInfoPath, sitePaths, type DaemonInfo } from '../site/home.ts';
import { homeFrom, withSite } from './context.ts';
import type { GlobalOptions } from './output.ts';

// node:http as its CommonJS object: an ESM import of it evaluates every export for its facade,
// among them getters that load undici, http2, tls and crypto (about 50 ms of each command's start).
const http = process.getBuiltinModule('node:http');
const net = process.getBuiltinModule('node:net');

export function runningDaemon(home: string): DaemonInfo | undefined {
  const p = daemonInfoPath(sitePaths(home).home);
  if (!existsSync(p)) return undefined;
  try {
    const info = JSON.parse(readFileSync(p, 'utf8')) as DaemonInfo;
    process.kill(info.pid, 0);
    return existsSync(info.socket) ? info : undefined;
  } catch {
    return undefined;
  }
}

export async function invoke(g: GlobalOptions, op: string, args: Record<string, unknown>, onProgress?: (p: TransferProgress) => void): Promise<unknown> {
  const home = homeFrom(g);
  const daemon = runningDaemon(home);
  if (daemon) return callDaemon(daemon, op, args, onProgress);
  // No daemon: the operation runs here, and only now is the site's code loaded.
  const [{ newEngine }, { runOp }] = await Promise.all([import('../app/workflows.ts'), import('../app/ops.ts')]);
  return withSite(g, op, async (site) => {
    const engine = newEngine(site);
    try {
      return await runOp({ engine, daemon: false, progress: onProgress }, op, args);
    } finally {
      await engine.close();
    }
  }, { readOnly: READ_ONLY_OPS.has(op) });
}

/** Operations that only read the catalog: they run without the site lock, beside anything else. */
const READ_ONLY_OPS = new Set(['status', 'site.list', 'mirror.list', 'link.list', 'snapshot.peers']);

/** One line of the daemon's answer, checked: progress, a result, or an error of a known code; else why it is not one. */
function answerLine(line: string): { progress?: TransferProgress; result?: unknown; error?: FerryErrorJSON } | FerryError {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    return new FerryError('PROTOCOL', `the daemon sent an answer line that is not JSON: ${line.slice(0, 200)}`);
  }
  const m = (msg !== null && typeof msg === 'object' && !Array.isArray(msg) ? msg : {}) as Record<string, unknown>;
  if ((m.progress !== null && typeof m.progress === 'object') || 'result' in m) return m;
  const e = m.error as Partial<FerryErrorJSON> | undefined;
  if (e !== null && typeof e === 'object' && typeof e.message === 'string') {
    if (isErrorCode(e.code)) return { error: { code: e.code, kind: e.kind ?? 'permanent', message: e.message, details: e.details } };
    return new FerryError('PROTOCOL', `the daemon answered an error of a code this ferry does not know (${String(e.code).slice(0, 40)}): ${e.message.slice(0, 2000)}`);
  }
  return new FerryError('PROTOCOL', `the daemon sent a line that is neither progress, a result nor an error: ${line.slice(0, 200)}`);
}

function callDaemon(d: DaemonInfo, op: string, args: Record<string, unknown>, onProgress?: (p: TransferProgress) => void): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // The socket made here, with no agent: an agent works out a TLS server name from the host for
    // every request, and its IPv6 test compiles a large regular expression (4-6 ms of each command).
    const req = http.request({ createConnection: () => net.connect(d.socket), method: 'POST', path: `/local/${op}`, headers: { 'content-type': 'application/json' } }, (res) => {
      let buf = '';
      let done = false;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line || done) continue;
          const msg = answerLine(line);
          if (msg instanceof FerryError) {
            done = true;
            reject(msg);
          } else if (msg.progress) onProgress?.(msg.progress);
          else if ('result' in msg) {
            done = true;
            resolve(msg.result);
          } else if (msg.error) {
            done = true;
            reject(new FerryError(msg.error.code, msg.error.message, { details: msg.error.details }));
          }
        }
      });
      // A daemon killed mid-answer may end the response without 'end': settle on close too,
      // so the command never exits 0 without an answer.
      const noAnswer = () => {
        if (!done) {
          done = true;
          reject(new FerryError('DAEMON_UNREACHABLE', `the daemon (pid ${d.pid}) stopped answering before the operation finished; check \`ferry status\` and the daemon's log`));
        }
      };
      res.on('end', noAnswer);
      res.on('close', noAnswer);
      res.on('aborted', noAnswer);
      res.on('error', noAnswer);
    });
    req.on('error', (err) => reject(new FerryError('DAEMON_UNREACHABLE', `cannot talk to the daemon (pid ${d.pid}) on ${d.socket}: ${err.message}`)));
    req.end(JSON.stringify(args));
  });
}
