// The daemon's local API (serveLocal, src/app/daemon.ts) answers every
// request with one result or one error line, and arguments of the wrong
// shape get a USAGE error that names the argument, never an INTERNAL one
// (a TypeError from deep inside an operation). A paired peer's DR calls
// (serveDr) are checked the same way, with PROTOCOL errors. The requests
// here are the crashes `npm run fuzz` found (target local-api), and their
// neighbours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isFerryError } from '../../../src/core/errors.ts';
import { serveLocal } from '../../../src/app/daemon.ts';
import { serveDr } from '../../../src/app/ops.ts';
import { addPeer } from '../../../src/site/peers.ts';
import { Engine } from '../../../src/site/engine.ts';
import { createSnapshot } from '../../../src/site/snapshots.ts';
import { createVolume, parseMemberSpec } from '../../../src/site/volumes.ts';
import { withLocalSite } from '../local-site.ts';

async function request(engine: Engine, op: string, body: unknown): Promise<{ result?: unknown; error?: { code: string; message: string } }> {
  const raw = Buffer.from(JSON.stringify(body));
  async function* source() {
    yield raw;
  }
  const lines: string[] = [];
  await serveLocal(engine, Object.assign(source(), { method: 'POST', url: `/local/${op}` }), (l) => lines.push(l));
  const all = lines.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  return all.at(-1);
}

test('arguments of the wrong shape are USAGE errors naming the argument, not INTERNAL', async () => {
  await withLocalSite('local-api', async ({ dir, site }) => {
    const engine = new Engine(site, { connect: () => ({}) as never });
    try {
      mkdirSync(join(dir, 'a'));
      createVolume(site, 'vol', { members: [parseMemberSpec(join(dir, 'a'))] });
      await createSnapshot(site, 'vol', { name: 'first', pool: engine.pool });
      const cases: Array<[string, unknown, RegExp]> = [
        // found by the fuzzer
        ['volume.create', { name: 'v', members: '' }, /members/],
        ['snapshot.delete', { volume: 'vol', snapshots: 8 }, /snapshots/],
        ['snapshot.delete', { volume: 'vol', snapshots: [3] }, /snapshots/],
        ['snapshot.delete', { volume: 'vol', snapshots: [{ '': 1 }] }, /snapshots/],
        // the same mistake in the other list and object arguments
        ['volume.create', { name: 'v', members: [join(dir, 'a'), 7] }, /members/],
        ['volume.create', { name: 'v', members: [join(dir, 'a')], hooks: [] }, /hooks/],
        ['volume.create', { name: 'v', members: [join(dir, 'a')], hooks: 'pre' }, /hooks/],
        ['volume.set', { name: 'vol', hooks: 5 }, /hooks/],
      ];
      for (const [op, args, names] of cases) {
        const answer = await request(engine, op, args);
        assert.ok(answer.error, `${op} ${JSON.stringify(args)} was accepted`);
        assert.notEqual(answer.error.code, 'INTERNAL', `${op} ${JSON.stringify(args)}: ${answer.error.message}`);
        assert.match(answer.error.message, names, `${op} ${JSON.stringify(args)}`);
      }
      // and the well-formed ones still work
      assert.deepEqual((await request(engine, 'snapshot.delete', { volume: 'vol', snapshots: ['first'], dryRun: true })).error, undefined);
    } finally {
      await engine.close();
    }
  });
});

test("a peer's DR call of the wrong shape is a PROTOCOL error before anything is read or stored", async () => {
  await withLocalSite('local-dr', async ({ site }) => {
    const engine = new Engine(site, { connect: () => ({}) as never });
    try {
      const peer = 'A'.repeat(52);
      addPeer(site, 'peer', 'https://127.0.0.1:9', peer);
      const schedule = { scheduleS: 900, minDelayS: 0, maxDelayS: 3600, bandwidth: null };
      const cases: Array<[string, unknown, RegExp]> = [
        // found by the fuzzer
        ['peer-delete', null, /JSON object/],
        ['migrate-accept', [''], /JSON object/],
        // the same mistake in the other fields read without a check
        ['migrate-accept', { volume: ['v'], final: 'x', backTo: 'v', schedule, others: [] }, /volume/],
        ['migrate-accept', { volume: 'v', final: 'x', backTo: 'v', schedule: 'often', others: [] }, /schedule/],
        ['migrate-accept', { volume: 'v', final: 'x', backTo: 'v', schedule: { ...schedule, maxDelayS: '1h' }, others: [] }, /max delay/],
        ['migrate-accept', { volume: 'v', final: 'x', backTo: 'v', schedule, others: 3 }, /others/],
        ['migrate-accept', { volume: 'v', final: 'x', backTo: 'v', schedule, others: [{ id: 5, volume: 'v', ...schedule }] }, /others/],
        ['failback', { volume: 'v', to: 'v', base: null, full: false, schedule: { ...schedule, scheduleS: -1 } }, /schedule must be at least/],
      ];
      for (const [op, body, names] of cases) {
        await assert.rejects(serveDr(engine, peer, op, body as Record<string, unknown>), (e: unknown) => isFerryError(e, 'PROTOCOL') && names.test(e.message), `${op} ${JSON.stringify(body)}`);
      }
    } finally {
      await engine.close();
    }
  });
});
