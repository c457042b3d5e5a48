// A migrate is refused while a secondary is not current, and the refusal names
// what brings it up to date as its state accepts it, in the order to run it:
// a paused mirror is resumed first (an update without --force is refused while
// paused), and writes found in its replica are overwritten only by a forced
// update. The test runs the commands as the refusal gives them, on two real
// daemons, until the migrate's plan (--dry-run) is accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CliResult } from '../helpers.ts';
import { cleanupSites, mirroredPair, writeChange, KiB, type TestSite } from '../harness/index.ts';

/** Every `ferry ...` a refusal names, in its order, as the words after `ferry`. */
function commandsOf(r: CliResult): string[][] {
  const message: string = r.json?.error?.message ?? r.stderr;
  return [...message.matchAll(/`ferry ([^`]+)`/g)].map((m) => m[1].trim().split(/\s+/));
}

test('migrate refused while a secondary is paused or its replica was written: the refusal names the commands that make it current, and they are accepted', async () => {
  const sites: TestSite[] = [];
  try {
    const { a, b, data } = await mirroredPair(sites, ['mig-a', 'mig-b']);
    // Someone wrote into b's replica: the next update is refused there (REPLICA_WRITTEN, the mirror's
    // last error); then the mirror is paused.
    writeFileSync(join(await b.memberPath('vol'), 'stray.txt'), 'written at b\n');
    writeChange(data, 'more.bin', 4 * KiB);
    await a.refused(['mirror', 'update', 'vol', '--to', b.name, '--wait'], 4, 'REPLICA_WRITTEN');
    await a.json(['mirror', 'pause', 'vol', '--to', b.name]);
    const refusal = await a.refused(['migrate', 'vol', '--to', b.name, '--dry-run'], 4, 'MIRROR_STATE', /is not current/);
    const commands = commandsOf(refusal);
    assert.deepEqual(commands, [['mirror', 'resume', 'vol', '--to', b.name], ['mirror', 'update', 'vol', '--to', b.name, '--force', '--wait']], refusal.json?.error?.message);
    for (const c of commands) await a.json(c);
    const plan = await a.json(['migrate', 'vol', '--to', b.name, '--dry-run']);
    assert.equal(plan.plan.to, b.name);
  } finally {
    await cleanupSites(sites);
  }
});
