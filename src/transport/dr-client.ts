// DrPeer (replication/dr-peer.ts) over the HTTP/2 peer client: each DR call a
// JSON request to the peer's `/v1/dr/<op>`, its answer checked field by field
// before it is returned. Built by the engine alone (Engine.drPeer).
import { DR_OPS, parseDrAnswer, type DrPeer } from '../replication/dr-peer.ts';
import type { PeerClient } from './client.ts';
import { ROUTES } from './http.ts';

export function drPeerOver(client: Pick<PeerClient, 'peer' | 'call' | 'close'>): DrPeer {
  const name = client.peer.name;
  const method = <K extends keyof typeof DR_OPS>(m: K) =>
    (async (req: unknown, signal?: AbortSignal) => parseDrAnswer(DR_OPS[m], await client.call<unknown>(ROUTES.dr(DR_OPS[m]), req, signal), name)) as DrPeer[K];
  return {
    name,
    state: method('state'),
    role: method('role'),
    changes: method('changes'),
    beside: method('beside'),
    tookOver: method('tookOver'),
    failoverNotice: method('failoverNotice'),
    failback: method('failback'),
    takeover: method('takeover'),
    takeoverNotice: method('takeoverNotice'),
    repoint: method('repoint'),
    migrateAccept: method('migrateAccept'),
    peerDelete: method('peerDelete'),
    close: () => client.close(),
  };
}
