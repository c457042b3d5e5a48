// The destination's answers to hello, put and commit are checked by the
// sender as closely as the destination checks what it is sent
// (src/replication/protocol.ts): a malformed answer is a PROTOCOL error,
// not a TypeError somewhere in the mirror job (`hello.snapshots.map`). A real
// receiver's answer passes unchanged.
import { PROTOCOL_VERSION } from '../../../src/replication/types.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../../../src/core/errors.ts';
import { parseAnswer, parseCommitResponse, parseHelloResponse, parsePutResult } from '../../../src/replication/protocol.ts';
import { Engine } from '../../../src/site/engine.ts';
import { withLocalSite } from '../local-site.ts';

const protocolError = (e: unknown) => isFerryError(e, 'PROTOCOL');

test("a real receiver's hello answer passes the check unchanged", async () => {
  await withLocalSite('answers', async ({ site }) => {
    const engine = new Engine(site, { connect: () => ({}) as never });
    try {
      const answer = await engine.receiverFor('A'.repeat(52)).hello({ protocol: PROTOCOL_VERSION, sourceVolume: 'src', volume: 'rep', members: [{ name: 'data', kind: 'tree' }, { name: 'disk', kind: 'image' }] });
      const wire = JSON.parse(JSON.stringify(answer));
      assert.deepEqual(parseHelloResponse(wire), wire);
    } finally {
      await engine.close();
    }
  });
});

test('malformed answers to hello, put and commit are PROTOCOL errors', () => {
  const hello = { protocol: PROTOCOL_VERSION, volume: 'v', snapshots: [{ id: '01JGFJJZ000000000000000000', name: null, time: 5 }], applied: null, applying: false, replicas: [{ name: 'd', kind: 'tree', path: '/r/v/d' }], delta: true };
  assert.deepEqual(parseHelloResponse(hello), hello);
  for (const bad of [null, 5, 'x', [], { ...hello, snapshots: 'all' }, { ...hello, snapshots: [7] }, { ...hello, snapshots: [{ id: 1, name: null, time: 0 }] }, { ...hello, applying: 'no' }, { ...hello, replicas: [{ name: 'd', kind: 'dir', path: '/' }] }, { ...hello, delta: 1 }]) {
    assert.throws(() => parseHelloResponse(bad), protocolError, JSON.stringify(bad));
  }
  assert.deepEqual(parsePutResult({ received: 3, stored: 2, bytes: 100 }), { received: 3, stored: 2, bytes: 100 });
  for (const bad of [null, {}, { received: -1, stored: 0, bytes: 0 }, { received: 1.5, stored: 0, bytes: 0 }, { received: '3', stored: 0, bytes: 0 }]) {
    assert.throws(() => parsePutResult(bad), protocolError, JSON.stringify(bad));
  }
  const refused = { snapshot: '01JGFJJZ000000000000000000', applied: false, writesSnapshot: 'writes-before-01JGFJJZ000000000000000000', refused: 'someone wrote into the replica' };
  assert.deepEqual(parseCommitResponse(refused), refused);
  assert.deepEqual(parseCommitResponse({ snapshot: 'x', applied: true, phases: { apply: 1.5, bogus: 'x' } }), { snapshot: 'x', applied: true, phases: { apply: 1.5 } });
  for (const bad of [null, [], { snapshot: 'x' }, { snapshot: 'x', applied: 'yes' }, { snapshot: 5, applied: true }, { snapshot: 'x', applied: false, refused: {} }]) {
    assert.throws(() => parseCommitResponse(bad), protocolError, JSON.stringify(bad));
  }
  assert.throws(() => parseAnswer(Buffer.from('<html>502</html>'), 'answer'), protocolError);
});
