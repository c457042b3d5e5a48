// Small helpers both benchmarks (run.ts: local snapshots; replication.ts) use.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
export { formatBytes as humanBytes } from '../src/cli/output.ts';

/** The line of a log that explains a failure, or its last few lines. */
export function lastLines(path: string, n = 3): string {
  const lines = (existsSync(path) ? readFileSync(path, 'utf8') : '').split('\n').map((l) => l.trim()).filter(Boolean);
  const error = lines.find((l) => /error|fatal|cannot|failed|refused/i.test(l));
  return (error ?? lines.slice(-n).join(' | ')).slice(0, 400) || '(no output)';
}

export function syncDisks(): void {
  spawnSync('sync');
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

export function timestamp(d: Date): string {
  return d.toISOString().replace(/[:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/** Reads every byte of a tree or file once, so that no tool pays for a cold cache; returns seconds. */
export function warmCache(path: string): number {
  const started = performance.now();
  const script = lstatSync(path).isDirectory() ? 'tar -cf - -C "$1" . | cat > /dev/null' : 'cat "$1" > /dev/null';
  const r = spawnSync('sh', ['-c', script, 'sh', path], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`reading ${path} to warm the cache failed`);
  return (performance.now() - started) / 1000;
}
