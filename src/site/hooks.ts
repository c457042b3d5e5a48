// Volume hooks: `pre` quiesces the application before capture, `post` thaws
// it after. A hook is a shell command with a time limit; it runs in its own
// process group so a timeout kills everything it started.
import { spawn } from 'node:child_process';
import { FerryError } from '../core/errors.ts';
import type { HookResult } from '../replication/dr-peer.ts';
import type { HookSpec } from './volumes.ts';

const OUTPUT_TAIL = 4096;

export function runHook(phase: 'pre' | 'post', spec: HookSpec, env: Record<string, string>): Promise<HookResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let output = '';
    const keep = (b: Buffer) => {
      output = (output + b.toString('utf8')).slice(-OUTPUT_TAIL);
    };
    let timedOut = false;
    let child;
    try {
      child = spawn('/bin/sh', ['-c', spec.command], {
        env: { ...process.env, ...env, FERRY_HOOK: phase },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
    } catch (err) {
      resolve({ phase, command: spec.command, exitCode: null, signal: null, timedOut: false, ms: 0, output: (err as Error).message });
      return;
    }
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, spec.timeout * 1000);
    child.on('error', (err) => keep(Buffer.from(String(err.message))));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ phase, command: spec.command, exitCode: code, signal, timedOut, ms: Date.now() - started, output: output.trim() });
    });
  });
}

export function hookSucceeded(r: HookResult): boolean {
  return r.exitCode === 0 && !r.timedOut;
}

export function hookError(r: HookResult): FerryError {
  const why = r.timedOut ? `timed out after ${Math.round(r.ms / 1000)} s` : r.signal ? `was killed by ${r.signal}` : `exited with status ${r.exitCode}`;
  const tail = r.output ? `; its output ends: ${r.output.slice(-400)}` : '';
  return new FerryError('HOOK_FAILED', `${r.phase} hook \`${r.command}\` ${why}${tail}; the snapshot was not taken — fix the hook and retry`, {
    details: { hook: r },
  });
}
