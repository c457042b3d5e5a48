// The soak's checker (test/soak/checker.ts) on catalogs written by hand: it finds the defects the
// soak exists for (a hold that outlives its mirror, a peer-snapshot row of a removed mirror, a peer
// snapshot `present` at a secondary that lacks it, a volume that cannot be removed without an
// internal error, two primaries nobody knows of), and stays quiet on a sound state. The soak itself
// runs it against real daemons (test/integration/soak.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Checker } from '../soak/checker.ts';
import { knownDefect } from '../soak/known.ts';
import type { SiteView, View } from '../soak/view.ts';
import { World, type CliOutcome } from '../soak/world.ts';

const A = 'A'.repeat(52);
const B = 'B'.repeat(52);
const S1 = '01KBWJ0000000000000000000A';
const S2 = '01KBWJ0000000000000000000B';

function site(name: string, id: string, parts: Partial<SiteView>): SiteView {
  return { name, id, up: true, peers: [], volumes: [], mirrors: [], secondaries: [], splitBrains: [], snapshots: [], holds: [], peerSnapshots: [], peerDeletions: [], links: [], workflows: [], ...parts };
}

const snap = (id: string, name: string | null = null) => ({ id, volume: 'v1', name, time: 1, origin: A, created_at: 1 });

/** a primary of v1 mirrored to b, in step at S1; b its secondary showing S1 */
function sound(): { a: SiteView; b: SiteView } {
  const a = site('a', A, {
    peers: [{ name: 'b', id: B }],
    volumes: [{ name: 'v1', role: 'primary' }],
    mirrors: [{ id: 'v1@b', volume: 'v1', peer: 'b', remote_volume: 'v1', state: 'idle', paused: 0, base: S1 }],
    snapshots: [snap(S1), snap(S2, 'p1')],
    holds: [{ snapshot: S1, holder: 'mirror:v1@b', volume: 'v1' }, { snapshot: S2, holder: 'peer', volume: 'v1' }],
    peerSnapshots: [{ snapshot: S2, mirror: 'v1@b', state: 'present' }],
  });
  const b = site('b', B, {
    peers: [{ name: 'a', id: A }],
    volumes: [{ name: 'v1', role: 'secondary' }],
    secondaries: [{ volume: 'v1', source_site: A, source_volume: 'v1', applied: S1, applying: null, consistent: 1, state: 'active', apply_error: null }],
    snapshots: [snap(S1), snap(S2, 'p1')],
    holds: [{ snapshot: S1, holder: `mirror-from:${A}`, volume: 'v1' }, { snapshot: S2, holder: 'peer', volume: 'v1' }],
  });
  return { a, b };
}

const view = (...sites: SiteView[]): View => new Map(sites.map((s) => [s.name, s]));
const world = new World('/nonexistent-soak-root');

async function check(v: View): Promise<string[]> {
  const c = new Checker(1);
  await c.afterStep(world, v, 1);
  c.claims(v, 1);
  return c.violations.map((x) => `${x.check}: ${x.message}`);
}

test('a sound pair of sites: no violation', async () => {
  const { a, b } = sound();
  assert.deepEqual(await check(view(a, b)), []);
});

test('a hold left by a mirror removed during an update (base or in flight) is a violation', async () => {
  const { a, b } = sound();
  a.mirrors = [];
  a.peerSnapshots = [];
  a.holds.push({ snapshot: S2, holder: 'mirror:v1@b:inflight', volume: 'v1' });
  const v = await check(view(a, b));
  assert.equal(v.filter((x) => x.startsWith('holds:')).length, 2, v.join('\n'));
  assert.match(v.join('\n'), /hold mirror:v1@b:inflight on .*no mirror v1@b exists/);
});

test('a peer-snapshot row of a removed mirror is a violation', async () => {
  const { a, b } = sound();
  a.mirrors = [];
  a.holds = a.holds.filter((h) => h.holder !== 'mirror:v1@b');
  assert.match((await check(view(a, b))).join('\n'), /rows: a: peer-snapshot row of .* for mirror v1@b, which does not exist/);
});

test('a peer snapshot `present` at a secondary that never received it is a violation', async () => {
  const { a, b } = sound();
  b.snapshots = b.snapshots.filter((s) => s.id !== S2);
  b.holds = b.holds.filter((h) => h.snapshot !== S2);
  assert.match((await check(view(a, b))).join('\n'), /peer-present: a reports peer snapshot p1 .* present at b \(mirror v1@b, idle\), which does not hold it/);
});

test('a volume remove that ends in an internal error is a violation; a refusal is not', () => {
  const c = new Checker(1);
  const outcome = (code: number, errorCode: string, message: string): CliOutcome => ({
    site: 'a', args: ['volume', 'remove', 'v1', '--force'], code, signal: null, stdout: JSON.stringify({ error: { code: errorCode, message } }), stderr: '', json: { error: { code: errorCode, message } }, killed: false, hung: false, ms: 10, errorCode,
  });
  const op = { kind: 'ferry' as const, site: 'a', args: ['volume', 'remove', 'v1', '--force'] };
  c.after(world, op, { text: '', faults: [], outcome: outcome(4, 'VOLUME_IN_USE', 'volume v1 has 1 mirror(s)') }, undefined, 1);
  assert.equal(c.violations.length, 0, c.violations.map((v) => v.message).join('\n'));
  c.after(world, op, { text: '', faults: [], outcome: outcome(1, 'INTERNAL', 'FOREIGN KEY constraint failed') }, undefined, 2);
  assert.equal(c.violations.length, 1);
  assert.match(c.violations[0].message, /internal error .*FOREIGN KEY/);
});

test('two primaries of one history with no broken-off relation are a violation; after a failover they are not', async () => {
  const { a, b } = sound();
  b.volumes = [{ name: 'v1', role: 'primary' }];
  b.secondaries = [];
  b.holds = b.holds.filter((h) => !h.holder.startsWith('mirror-from:'));
  assert.match((await check(view(a, b))).join('\n'), /two-primaries: v1 is primary at a and at b/);
  // a failover at b: its relation to a is kept broken off (and its base held)
  const f = sound();
  f.b.volumes = [{ name: 'v1', role: 'primary' }];
  f.b.secondaries[0].state = 'broken-off';
  assert.deepEqual((await check(view(f.a, f.b))).filter((x) => x.startsWith('two-primaries')), []);
});

test('a claim made before its destination removed its volume is said so, and is a violation like any other (its known defect is fixed)', async () => {
  const ok = (args: string[]): CliOutcome => ({ site: 'b', args, code: 0, signal: null, stdout: '{}', stderr: '', json: {}, killed: false, hung: false, ms: 10 });
  for (const removed of [true, false]) {
    const { a, b } = sound();
    const c = new Checker(1);
    await c.afterStep(world, view(a, b), 1); // a's claims are seen from step 1
    if (removed) c.after(world, { kind: 'ferry', site: 'b', args: ['volume', 'remove', 'v1', '--force'] }, { text: '', faults: [], outcome: ok(['volume', 'remove', 'v1', '--force']) }, undefined, 2);
    b.snapshots = b.snapshots.filter((x) => x.id !== S2);
    b.holds = b.holds.filter((h) => h.snapshot !== S2);
    c.claims(view(a, b), 3);
    const v = c.violations.find((x) => x.check === 'peer-present');
    assert.ok(v, 'the claim is a violation either way');
    if (removed) {
      assert.match(v.message, /\(claimed since step 1, before v1 at b was removed at step 2\)/);
    }
    assert.equal(knownDefect(v), undefined, v.message);
  }
});

test('two secondaries of one site that both failed over, neither knowing of the other: two primaries, said so (no longer a known defect); recorded, they are not', async () => {
  const C = 'C'.repeat(52);
  const { a, b } = sound();
  const broken = { volume: 'v1', source_site: A, source_volume: 'v1', applied: S1, applying: null, consistent: 1, state: 'broken-off' as const, apply_error: null };
  b.volumes = [{ name: 'v1', role: 'primary' }];
  b.secondaries = [{ ...broken }];
  const c = site('c', C, { peers: [{ name: 'a', id: A }, { name: 'b', id: B }], volumes: [{ name: 'v1', role: 'primary' }], secondaries: [{ ...broken }], snapshots: [snap(S1)], holds: [{ snapshot: S1, holder: `mirror-from:${A}`, volume: 'v1' }] });
  a.mirrors = [{ ...a.mirrors[0], state: 'broken-off' }];
  const ch = new Checker(1);
  await ch.afterStep(world, view(a, b, c), 1);
  const v = ch.violations.find((x) => x.check === 'two-primaries');
  assert.ok(v, 'b and c both primary with no relation between them');
  assert.match(v.message, /v1 is primary at b and at c[\s\S]*both failed over from a/);
  assert.equal(knownDefect(v), undefined, 'fixed: a forced second failover records the split brain');
  // What the fix records: c's split brain with b (the old primary's answer named b), kept for the
  // volume apart from c's relation to a.
  c.splitBrains = [{ volume: 'v1', site: B }];
  const ok = new Checker(1);
  await ok.afterStep(world, view(a, b, c), 1);
  assert.deepEqual(ok.violations.filter((x) => x.check === 'two-primaries'), []);
});

test("a base the destination released after committing a newer snapshot of the source whose answer was lost: no violation (the next update adopts it); otherwise a violation", async () => {
  const S3 = '01KBWJ0000000000000000000C';
  const bases = async (aSnaps: string[], bSnaps: string[]): Promise<string[]> => {
    const { a, b } = sound();
    a.snapshots = aSnaps.map((id) => snap(id));
    a.holds = [];
    a.peerSnapshots = [];
    b.snapshots = bSnaps.map((id) => snap(id));
    b.holds = [];
    b.secondaries[0]!.applied = bSnaps.at(-1) ?? null;
    return (await check(view(a, b))).filter((v) => v.startsWith('base:'));
  };
  // a took S3 after its base S1 and sent it; b committed it and released S1; a never recorded S3 as its base.
  assert.deepEqual(await bases([S1, S3], [S3]), []);
  // b holds nothing a took after S1: the base is lost.
  assert.equal((await bases([S1, S3], [])).length, 1);
  // b holds S3, but a no longer does: nothing to adopt.
  assert.equal((await bases([S1], [S3])).length, 1);
  // b holds only a snapshot a took before its base: never adopted (a base does not move back).
  assert.equal((await bases([S3, S1], [S3])).length, 1);
});
