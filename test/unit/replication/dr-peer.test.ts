// DrPeer over a client (src/transport/dr-client.ts, src/replication/dr-peer.ts):
// each method calls its own DR route, and a peer's answer (bytes from the
// network) is checked field by field before a workflow acts on it. A
// malformed answer is refused with PROTOCOL naming the peer, the call and the
// field; a sound one comes back as sent (an older peer's missing optional
// fields stay missing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../../../src/core/errors.ts';
import type { DrPeer } from '../../../src/replication/dr-peer.ts';
import { drPeerOver } from '../../../src/transport/dr-client.ts';

const ID = '01JABCDEFGHJKMNPQRSTVWXYZ0';
const ID2 = '01JABCDEFGHJKMNPQRSTVWXYZ1';

/** A DrPeer whose every call answers `answer`, recording the routes and requests. */
function peerAnswering(answer: unknown): { peer: DrPeer; calls: Array<[string, unknown]>; closed: () => boolean } {
  const calls: Array<[string, unknown]> = [];
  let closed = false;
  const peer = drPeerOver({
    peer: { name: 'london', id: 'X', url: 'https://x', createdAt: 0 },
    call: async <T>(path: string, payload: unknown) => {
      calls.push([path, payload]);
      return structuredClone(answer) as T;
    },
    close: () => {
      closed = true;
    },
  });
  return { peer, calls, closed: () => closed };
}

const state = { volume: 'vol', role: 'primary', failedOverFrom: null, follows: null, snapshots: [ID, ID2], newest: { id: ID2, time: 1_700_000_000_000 }, changedSinceBase: { bytes: 10, paths: 2 } };
const update = {
  mirror: 'vol@paris',
  snapshot: ID2,
  base: ID,
  transfer: { snapshot: ID2, bytes: 100, rawBytes: 200, objects: 3, seconds: 0.5, throughput: 200, at: 1_700_000_000_000, phases: { snapshot: 0.1, send: 0.2, 'destination.apply': 0.05 } },
  applied: false,
  writesSnapshot: 'replica-writes-2026-01-01T00-00-00-000Z',
  warnings: [{ path: 'a/b', message: 'unreadable', problem: 'unreadable' }],
};
const changes = { site: 'london', volume: 'vol', role: 'primary', newest: { id: ID2, name: null, time: 5 }, base: ID, hasBase: true, added: 1, modified: 0, removed: 2, bytesAdded: 10, bytesChanged: 0, bytesRemoved: 20 };

test('each DR call goes to its own route and a sound answer comes back as sent', async () => {
  const cases: Array<[keyof DrPeer, string, unknown, unknown]> = [
    ['state', 'state', { volume: 'vol', base: null }, state],
    ['role', 'role', { volume: 'vol' }, { volume: 'vol', role: 'secondary', follows: 'X' }],
    ['role', 'role', { volume: 'vol' }, { volume: 'vol', role: 'primary', follows: null }],
    ['beside', 'beside', { volume: 'vol', from: 'X', fromVolume: 'vol' }, { volume: 'vol' }],
    ['beside', 'beside', { volume: 'vol', from: 'X', fromVolume: 'vol' }, { volume: null }],
    ['changes', 'changes', { volume: 'vol', base: ID, lineage: [ID] }, changes],
    ['failoverNotice', 'failover-notice', { volume: 'vol', at: 'vol', late: true }, { mirror: 'vol@paris', state: 'broken-off' }],
    ['failoverNotice', 'failover-notice', { volume: 'vol', at: 'vol', force: true }, { mirror: 'vol@paris', state: 'broken-off', tookOverBy: { site: 'X', volume: 'vol' }, alsoPrimary: [{ site: 'Y', volume: 'v2' }] }],
    ['failback', 'failback', { volume: 'vol', to: 'vol', base: ID, full: false, schedule: null }, update],
    ['takeover', 'takeover', { volume: 'vol', newSourceVolume: 'vol', snapshots: [ID], oldSource: null, oldSourceVolume: null }, { volume: 'vol', common: ID, applied: null, oldPrimary: 'agreed' }],
    ['takeoverNotice', 'takeover-notice', { volume: 'vol', by: 'X' }, { agreed: true, role: 'secondary' }],
    ['repoint', 'repoint', { volume: 'vol', newSource: 'X', newSourceVolume: 'vol' }, { volume: 'vol', source: 'paris', returned: true }],
    ['migrateAccept', 'migrate-accept', { volume: 'vol', final: ID, backTo: 'vol', schedule: { scheduleS: null, minDelayS: 0, maxDelayS: 3600, bandwidth: null }, others: [] }, { post: { phase: 'post', command: 'true', exitCode: 0, signal: null, timedOut: false, ms: 3, output: '' } }],
    ['peerDelete', 'peer-delete', { volume: 'vol', snapshot: ID }, { deleted: false, heldBy: ['mirror:vol@x'] }],
  ];
  for (const [method, op, req, answer] of cases) {
    const { peer, calls, closed } = peerAnswering(answer);
    const got = await (peer[method] as (r: unknown) => Promise<unknown>)(req);
    assert.deepEqual(got, answer, method);
    assert.deepEqual(calls, [[`/v1/dr/${op}`, req]], method);
    peer.close();
    assert.equal(closed(), true);
  }
  // An older peer leaves `follows` out: absent, not invented.
  const { follows: _, ...older } = state;
  assert.equal('follows' in (await peerAnswering(older).peer.state({ volume: 'vol', base: null })), false);
});

test('a malformed DR answer is refused with PROTOCOL, naming the peer, the call and the field', async () => {
  const refused = (re: RegExp) => (err: unknown) => isFerryError(err, 'PROTOCOL') && /^london's answer to dr\//.test(err.message) && re.test(err.message);
  const bad: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['not an object', () => peerAnswering([state]).peer.state({ volume: 'vol', base: null }), /dr\/state must be a JSON object/],
    ['snapshots not a list', () => peerAnswering({ ...state, snapshots: ID }).peer.state({ volume: 'vol', base: null }), /snapshots must be a list/],
    ['a snapshot id that is none', () => peerAnswering({ ...state, snapshots: [ID, 42] }).peer.state({ volume: 'vol', base: null }), /snapshots\[1\] must be a snapshot id/],
    ['role missing', () => peerAnswering({ ...state, role: undefined }).peer.state({ volume: 'vol', base: null }), /role must be a string/],
    ['newest.time negative', () => peerAnswering({ ...state, newest: { id: ID, time: -1 } }).peer.state({ volume: 'vol', base: null }), /newest: time must be a number/],
    ['changed bytes a string', () => peerAnswering({ ...state, changedSinceBase: { bytes: '10', paths: 1 } }).peer.state({ volume: 'vol', base: null }), /changedSinceBase: bytes must be a number/],
    ['failback without its transfer', () => peerAnswering({ ...update, transfer: undefined }).peer.failback({ volume: 'v', to: 'v', base: null, full: true, schedule: null }), /dr\/failback: transfer must be a JSON object/],
    ['failback transfer bytes not finite', () => peerAnswering({ ...update, transfer: { ...update.transfer, bytes: 'lots' } }).peer.failback({ volume: 'v', to: 'v', base: null, full: true, schedule: null }), /transfer: bytes must be a number/],
    ['failback applied a string', () => peerAnswering({ ...update, applied: 'yes' }).peer.failback({ volume: 'v', to: 'v', base: null, full: true, schedule: null }), /applied must be true or false/],
    ['takeover oldPrimary unknown', () => peerAnswering({ volume: 'vol', common: null, applied: null, oldPrimary: 'maybe' }).peer.takeover({ volume: 'v', newSourceVolume: 'v', snapshots: [], oldSource: null, oldSourceVolume: null }), /oldPrimary must be agreed, unreachable or already/],
    ['takeover notice not agreed', () => peerAnswering({ agreed: 'sure', role: 'primary' }).peer.takeoverNotice({ volume: 'v', by: 'X' }), /agreed must be true/],
    ['repoint returned a number', () => peerAnswering({ volume: 'v', source: 's', returned: 1 }).peer.repoint({ volume: 'v', newSource: 'X', newSourceVolume: 'v' }), /returned must be true or false/],
    ['hook phase unknown', () => peerAnswering({ post: { phase: 'during', command: 'x', exitCode: 0, signal: null, timedOut: false, ms: 1, output: '' } }).peer.migrateAccept({ volume: 'v', final: ID, backTo: 'v', schedule: { scheduleS: null, minDelayS: 0, maxDelayS: 1, bandwidth: null }, others: [] }), /post: phase must be pre or post/],
    ['peer delete deleted a string', () => peerAnswering({ deleted: 'yes' }).peer.peerDelete({ volume: 'v', snapshot: ID }), /dr\/peer-delete: deleted must be true or false/],
    ['failover notice alsoPrimary not a list', () => peerAnswering({ mirror: 'm', state: 'broken-off', alsoPrimary: { site: 'X', volume: 'v' } }).peer.failoverNotice({ volume: 'v', at: 'v' }), /alsoPrimary must be a list/],
    ['failover notice alsoPrimary site missing', () => peerAnswering({ mirror: 'm', state: 'broken-off', alsoPrimary: [{ volume: 'v' }] }).peer.failoverNotice({ volume: 'v', at: 'v' }), /alsoPrimary\[0\]: site must be a string/],
    ['role: role a number', () => peerAnswering({ volume: 'v', role: 1, follows: null }).peer.role({ volume: 'v' }), /dr\/role: role must be a string/],
    ['beside: volume a number', () => peerAnswering({ volume: 3 }).peer.beside({ volume: 'v', from: 'X', fromVolume: 'v' }), /dr\/beside: volume must be a string/],
    ['took-over: volume a number', () => peerAnswering({ volume: 3 }).peer.tookOver({ from: 'X', fromVolume: 'v' }), /dr\/took-over: volume must be a string/],
    ['role: follows a list', () => peerAnswering({ volume: 'v', role: 'secondary', follows: ['X'] }).peer.role({ volume: 'v' }), /dr\/role: follows must be a string/],
    ['changes hasBase missing', () => peerAnswering({ ...changes, hasBase: undefined }).peer.changes({ volume: 'v', base: ID, lineage: [] }), /hasBase must be true or false/],
  ];
  for (const [what, call, re] of bad) await assert.rejects(call(), refused(re), what);
});
