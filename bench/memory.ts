// Memory of a source and destination daemon pair over a generated tree, for
// docs/memory.md: RSS (now and VmHWM), threads, and the daemons' own /metrics
// (heap, external, array buffers, the memory budget's shares) sampled every
// 250 ms during initialize, update and an update with nothing changed.
//
//   node bench/memory.ts --tree DIR [--scale 0.1] [--budget 256MiB] [--change]
//
// DIR/tree as made by gen.ts; --change applies change.ts's standard change
// between initialize and update. Not a timing benchmark: it prints peaks.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { cleanupSites, createSite, pairSites, type TestSite } from '../test/harness/index.ts';

const { values } = parseArgs({ options: { tree: { type: 'string' }, scale: { type: 'string', default: '0.1' }, budget: { type: 'string' }, change: { type: 'boolean', default: false }, env: { type: 'string', multiple: true, default: [] } } });
if (!values.tree) throw new Error('--tree DIR is required');

function proc(pid: number): { rss: number; hwm: number; threads: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024, threads: kb('Threads') };
}

/** The daemon's /metrics over its local socket, as name{labels} -> value. */
function metrics(s: TestSite): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: join(s.home, 'ferry.sock'), path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const m = new Map<string, number>();
        for (const l of body.split('\n')) {
          const x = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(l);
          if (x) m.set(x[1], Number(x[2]));
        }
        resolve(m);
      });
    }).on('error', reject);
  });
}

const MiB = (n: number | undefined) => Math.round((n ?? 0) / 2 ** 20);
type Peak = Record<string, number>;
function keepPeak(p: Peak, k: string, v: number): void {
  p[k] = Math.max(p[k] ?? 0, v);
}

const sites: TestSite[] = [];
try {
  const [a, b] = await Promise.all([createSite('src'), createSite('dst')]);
  sites.push(a, b);
  a.defineVolume('data', [values.tree]);
  const args = values.budget ? ['--memory-budget', values.budget] : [];
  const env = Object.fromEntries(values.env!.map((e) => e.split('=') as [string, string]));
  await Promise.all([a.start({ args, env }), b.start({ args, env })]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'data', '--to', 'dst']);
  const phase = async (name: string, run: () => Promise<unknown>) => {
    const peaks: Record<string, Peak> = { src: {}, dst: {} };
    let done = false;
    const sample = (async () => {
      while (!done) {
        for (const [k, s] of [['src', a], ['dst', b]] as const) {
          const p = proc(s.proc!.pid!);
          keepPeak(peaks[k], 'rss', p.rss);
          keepPeak(peaks[k], 'threads', p.threads);
          const m = await metrics(s).catch(() => new Map<string, number>());
          keepPeak(peaks[k], 'heapUsed', MiB(m.get('nodejs_heap_size_used_bytes')));
          keepPeak(peaks[k], 'heapTotal', MiB(m.get('nodejs_heap_size_total_bytes')));
          keepPeak(peaks[k], 'external', MiB(m.get('nodejs_external_memory_bytes')));
          keepPeak(peaks[k], 'arrayBuffers', MiB(m.get('nodejs_array_buffers_bytes')));
          for (const [key, v] of m) if (key.startsWith('ferry_memory_share_peak_bytes')) keepPeak(peaks[k], `share ${/share="(\w+)"/.exec(key)![1]}`, MiB(v));
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    await run();
    const workers = { src: (await a.json(['status'])).daemon?.memory?.workers, dst: (await b.json(['status'])).daemon?.memory?.workers };
    done = true;
    await sample;
    for (const k of ['src', 'dst'] as const) peaks[k].hwm = Math.round(proc((k === 'src' ? a : b).proc!.pid!).hwm);
    const w = (x: any[] | undefined) => (x ?? []).map((y) => `${y.pool} ${MiB(y.heapUsed)}/${MiB(y.heapTotal)}/${MiB(y.heapLimit)}`);
    console.log(JSON.stringify({ phase: name, peaksMiB: peaks, workersAtEnd: { src: w(workers.src), dst: w(workers.dst) } }));
  };
  const long = async (args: string[]) => {
    const r = await a.ferry([...args, '--json'], { timeoutMs: 1_200_000 });
    if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}: ${r.stdout} ${r.stderr}`);
  };
  await phase('initialize', () => long(['mirror', 'initialize', 'data', '--to', 'dst', '--wait']));
  if (values.change) execFileSync(process.execPath, [join(import.meta.dirname, 'change.ts'), '--tree', values.tree, '--scale', values.scale!], { stdio: 'inherit' });
  await phase('update', () => long(['mirror', 'update', 'data', '--to', 'dst', '--wait']));
  await phase('update, nothing changed', () => long(['mirror', 'update', 'data', '--to', 'dst', '--wait']));
} catch (err) {
  for (const s of sites) console.error(`--- ${s.name} daemon (exit ${s.proc?.exitCode ?? s.proc?.signalCode ?? 'running'}) log (tail):\n${s.log.slice(-3000)}`);
  throw err;
} finally {
  await cleanupSites(sites);
}
