// In-process fault injection (EngineOptions.faults): the engine composes every connection it makes
// through transport/compose.ts, so one FaultPlan reaches a mirror update's calls and a DR call alike.
// `fail` faults refuse a call before anything is sent, so no peer needs to listen here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseFaultRules } from '../../../src/core/test-knobs.ts';
import { FaultPlan } from '../../../src/transport/faults.ts';
import { Engine } from '../../../src/site/engine.ts';
import { addPeer } from '../../../src/site/peers.ts';
import { createVolume } from '../../../src/site/volumes.ts';
import { createMirror } from '../../../src/site/mirrors.ts';
import { getPeer } from '../../../src/catalog/peers.ts';
import { withLocalSite } from '../local-site.ts';

test('one in-process FaultPlan reaches replication (a mirror update) and DR calls (DrPeer) of an engine', async () => {
  await withLocalSite('a', async ({ dir, site }) => {
    const plan = new FaultPlan(parseFaultRules('hello:fail:code=PEER_UNREACHABLE;dr.state:fail'));
    const engine = new Engine(site, { faults: plan });
    try {
      addPeer(site, 'b', 'https://127.0.0.1:9', 'B'.repeat(51) + 'A');
      const data = join(dir, 'data');
      mkdirSync(data);
      writeFileSync(join(data, 'f.txt'), 'one\n');
      createVolume(site, 'vol', { members: [{ path: data }] });
      createMirror(site, { volume: 'vol', to: 'b' });
      await assert.rejects(engine.update('vol', 'b', { initialize: true }), (e: Error & { code?: string }) => e.code === 'PEER_UNREACHABLE' && /test fault hello:fail/.test(e.message));
      const dr = engine.drPeer(getPeer(site.catalog, 'b'), { stallTimeoutMs: 5_000 });
      try {
        await assert.rejects(dr.state({ volume: 'vol', base: null }), (e: Error & { code?: string }) => e.code === 'TRANSFER_INTERRUPTED' && /test fault dr\.state:fail/.test(e.message));
      } finally {
        dr.close();
      }
      assert.deepEqual(plan.fired.map((f) => `${f.call}:${f.action}`), ['hello:fail', 'dr.state:fail']);
    } finally {
      await engine.close();
    }
  });
});
