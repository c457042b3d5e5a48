// A writer process killed with SIGKILL at a random instant (mid-write,
// mid-fsync, mid-commit, mid-GC) leaves a store that recovers to an index in
// which every object reads back verified, and in which every object whose
// flush returned, and that was not declared dead, is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ObjectId } from '../../../src/core/ids.ts';
import { PackStore } from '../../../src/store/pack-store.ts';
import { makeTempDir, openTestDb, removeDir } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NODE = join(ROOT, 'node_modules', '.bin', 'node');
const CHILD = fileURLToPath(new URL('./fixtures/kill-writer.ts', import.meta.url));

interface RunOutcome {
  flushed: ObjectId[];
  dead: ObjectId[];
  stderr: string;
  signal: NodeJS.Signals | null;
  code: number | null;
}

/** Runs the writer until it reports READY, lets it work for `ms`, then SIGKILLs it. */
function runAndKill(home: string, deadFile: string, ms: number): Promise<RunOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [CHILD, home, deadFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 8000);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (!timer && out.startsWith('READY\n')) timer = setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      clearTimeout(timer);
      const flushed: ObjectId[] = [];
      const dead: ObjectId[] = [];
      // only complete lines count: the last one may be cut
      for (const line of out.split('\n').slice(0, -1)) {
        if (line.startsWith('F ')) flushed.push(...(line.slice(2).split(',') as ObjectId[]));
        if (line.startsWith('D ') && line.length > 2) dead.push(...(line.slice(2).split(',') as ObjectId[]));
      }
      resolve({ flushed, dead, stderr, signal, code });
    });
  });
}

test('SIGKILL at random instants while writing, flushing and collecting: recovery leaves every indexed object verified and every flushed live object present', { timeout: 30_000 }, async (t) => {
  const home = makeTempDir('ferry-kill-');
  const deadFile = join(home, 'dead.txt');
  const flushed = new Set<ObjectId>();
  const dead = new Set<ObjectId>();
  try {
    for (let rep = 0; rep < 5; rep++) {
      const r = await runAndKill(home, deadFile, randomInt(100, 450));
      assert.equal(r.signal, 'SIGKILL', `writer exited on its own (code ${r.code}): ${r.stderr}`);
      for (const id of r.flushed) flushed.add(id);
      for (const id of r.dead) dead.add(id);
      writeFileSync(deadFile, [...dead].join('\n'));
      t.diagnostic(`run ${rep}: flushed ${r.flushed.length} dead ${r.dead.length}`);

      const db = openTestDb(join(home, 'catalog.db'));
      try {
        const { store, recovery } = PackStore.open({ db, dir: join(home, 'store') });
        assert.deepEqual(recovery.damagedPacks, [], 'no indexed pack is torn');
        const report = store.verifyAll();
        assert.deepEqual(report.bad, [], 'every indexed object reads back verified');
        for (const id of flushed) {
          if (!dead.has(id)) assert.equal(store.has(id), true, `flushed live object ${id} is present`);
        }
        assert.ok(report.checked >= [...flushed].filter((id) => !dead.has(id)).length);
        store.close();
      } finally {
        db.close();
      }
    }
    assert.ok(flushed.size > 0, 'the writer flushed something before being killed');
  } finally {
    removeDir(home);
  }
});
