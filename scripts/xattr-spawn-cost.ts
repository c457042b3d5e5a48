// What one getfattr batch costs a large process, run directly (a fork of the
// process) and through the daemon's helpers (snapshot/xattr-helper.ts):
//   ./node_modules/.bin/node scripts/xattr-spawn-cost.ts [MiB held, default 500] [runs, default 20]
// The helpers are started first, while the process is small (as `ferry
// serve` does); then it allocates and touches the Buffers, and times each
// kind of run on one small file. Figures depend on the machine and its load:
// run it on a quiet one before quoting them (docs/design.md, "Fixed costs").
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XattrHelpers } from '../src/snapshot/xattr-helper.ts';

const mib = Number(process.argv[2] ?? 500);
const runs = Number(process.argv[3] ?? 20);
const dir = mkdtempSync(join(tmpdir(), 'ferry-spawn-cost-'));
const helpers = new XattrHelpers();
try {
  await helpers.start();
  const file = join(dir, 'f');
  writeFileSync(file, 'x');
  const argv = ['xargs', '-0', '-r', 'getfattr', '-h', '-d', '-m', '^user\\.', '-e', 'hex', '--absolute-names', '--'];
  const input = Buffer.from(`${file}\0`);
  const held: Buffer[] = [];
  for (let i = 0; i < mib; i++) held.push(Buffer.alloc(1 << 20, i & 0xff)); // touched: resident, as a daemon's are
  const direct = () =>
    new Promise<void>((resolve, reject) => {
      const c = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'ignore', 'ignore'] });
      c.on('error', reject);
      c.on('close', () => resolve());
      c.stdin.end(input);
    });
  const kinds: Array<[string, () => unknown]> = [
    ['spawn (async, as XattrReader without a helper)', direct],
    ['spawnSync (as the writer without a helper)', () => spawnSync(argv[0], argv.slice(1), { input })],
    ['helper round trip (async)', () => helpers.run(argv, input)],
    ['helper round trip (sync, FIFOs)', () => helpers.runSync(argv, input)],
  ];
  console.log(`holding ${mib} MiB (rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB), ${runs} runs each:`);
  for (const [name, run] of kinds) {
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await run();
      ms.push(performance.now() - t);
    }
    ms.sort((x, y) => x - y);
    console.log(`  ${name}: median ${ms[ms.length >> 1].toFixed(1)} ms, min ${ms[0].toFixed(1)} ms, max ${ms[ms.length - 1].toFixed(1)} ms`);
  }
  held.length = 0;
} finally {
  await helpers.stop();
  rmSync(dir, { recursive: true, force: true });
}
