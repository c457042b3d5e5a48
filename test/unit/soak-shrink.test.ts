// The soak's shrinker (test/soak/repro.ts shrink) on a failure the real checker finds: a fake harness
// models two sites' catalogs (what the soak reads beside its daemons) with a planted defect: `mirror
// remove` during an update left running (no --wait) forgets the update's in-flight hold, the defect
// class the soak exists for. Forty actions reach it; the shrinker must cut them down to the two that
// matter, and the list it returns must still fail the same check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Op } from '../soak/actions.ts';
import { Checker, type Violation } from '../soak/checker.ts';
import { shrink } from '../soak/repro.ts';
import type { SiteView, View } from '../soak/view.ts';
import { World } from '../soak/world.ts';

const A = 'A'.repeat(52);
const B = 'B'.repeat(52);
const S1 = '01KBWJ0000000000000000000A';

const snap = (id: string, name: string | null = null) => ({ id, volume: 'v1', name, time: 1, origin: A, created_at: 1 });

/** a primary of v1 at a mirrored to b, in step at S1 */
function start(): View {
  const empty = { up: true, mirrors: [], secondaries: [], splitBrains: [], holds: [], peerSnapshots: [], peerDeletions: [], links: [], workflows: [] };
  const a: SiteView = {
    ...empty, name: 'a', id: A, peers: [{ name: 'b', id: B }], volumes: [{ name: 'v1', role: 'primary' }], snapshots: [snap(S1)],
    mirrors: [{ id: 'v1@b', volume: 'v1', peer: 'b', remote_volume: 'v1', state: 'idle', paused: 0, base: S1 }],
    holds: [{ snapshot: S1, holder: 'mirror:v1@b', volume: 'v1' }],
  };
  const b: SiteView = {
    ...empty, name: 'b', id: B, peers: [{ name: 'a', id: A }], volumes: [{ name: 'v1', role: 'secondary' }], snapshots: [snap(S1)],
    secondaries: [{ volume: 'v1', source_site: A, source_volume: 'v1', applied: S1, applying: null, consistent: 1, state: 'active', apply_error: null }],
    holds: [{ snapshot: S1, holder: `mirror-from:${A}`, volume: 'v1' }],
  };
  return new Map([['a', a], ['b', b]]);
}

/** What each action does to the model; `mirror remove` has the planted defect. */
function step(v: View, op: Op, n: number): void {
  const a = v.get('a')!;
  if (op.kind !== 'ferry') return; // writes, faults: nothing the catalogs show
  const [verb, what] = op.args;
  if (verb === 'snapshot' && what === 'create') a.snapshots.push(snap(`01KBWJ${String(n).padStart(20, '0')}`));
  if (verb === 'mirror' && what === 'update' && a.mirrors.length && !op.args.includes('--wait')) {
    // an update left running holds the newest snapshot while it sends
    a.holds.push({ snapshot: a.snapshots[a.snapshots.length - 1].id, holder: 'mirror:v1@b:inflight', volume: 'v1' });
  }
  if (verb === 'mirror' && what === 'remove') {
    a.mirrors = [];
    a.holds = a.holds.filter((h) => h.holder !== 'mirror:v1@b'); // the defect: its in-flight hold stays
  }
  if (verb === 'mirror' && what === 'create' && !a.mirrors.length) a.mirrors.push({ id: 'v1@b', volume: 'v1', peer: 'b', remote_volume: 'v1', state: 'uninitialized', paused: 0, base: null });
}

const world = new World('/nonexistent-soak-root');

/** The fake harness: the actions from scratch, the real checker after every step. */
async function replay(ops: Op[]): Promise<Violation[]> {
  const v = start();
  const c = new Checker(1);
  for (const [i, op] of ops.entries()) {
    step(v, op, i + 1);
    await c.afterStep(world, v, i + 1);
    if (c.violations.length) break; // a soak stops at its first violation
  }
  return c.violations;
}

const ferry = (...args: string[]): Op => ({ kind: 'ferry', site: 'a', args });
const write = (i: number): Op => ({ kind: 'write', site: 'a', volume: 'v1', member: 'data', op: 'new', pick: i, size: 10, seed: `s${i}` });

test('the shrinker cuts a failing run of 40 actions down to the two that fail, and the shrunk list still fails', async () => {
  const ops: Op[] = [];
  for (let i = 1; i <= 40; i++) {
    if (i === 9) ops.push(ferry('mirror', 'update', 'v1', '--to', 'b'));
    else if (i === 31) ops.push(ferry('mirror', 'remove', 'v1', '--to', 'b'));
    else if (i % 5 === 0) ops.push(ferry('snapshot', 'create', 'v1'));
    else if (i % 7 === 0) ops.push(ferry('mirror', 'update', 'v1', '--to', 'b', '--wait'));
    else ops.push(write(i));
  }
  const found = await replay(ops);
  assert.equal(found.length, 1, 'the planted defect is found');
  const violation = found[0];
  assert.equal(violation.check, 'holds');
  assert.equal(violation.step, 31);
  assert.match(violation.message, /mirror:v1@b:inflight/);

  const lines: string[] = [];
  const r = await shrink({ seed: 1, sites: 2, ops, violation, budgetMs: 60_000, replay, print: (s) => lines.push(s) });
  assert.ok(r.replays > 1);
  assert.deepEqual(r.ops, [ferry('mirror', 'update', 'v1', '--to', 'b'), ferry('mirror', 'remove', 'v1', '--to', 'b')], lines.join('\n'));
  const again = await replay(r.ops);
  assert.deepEqual(again.map((x) => x.check), ['holds'], 'the shrunk list fails the same check');
  // and neither action alone fails: the shrinker kept exactly what the failure needs
  for (const one of r.ops) assert.deepEqual(await replay([one]), []);
});
