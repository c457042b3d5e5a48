// Paired sites (`peers`): each pinned by its certificate fingerprint (its site
// id), under a name chosen here, at a URL. Checking what pairing is given
// (names, ids, URLs) is the site's (site/peers.ts).
import { FerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import type { Catalog } from './catalog.ts';

export interface Peer {
  name: string;
  id: string;
  url: string;
  createdAt: number;
}

interface PeerRow {
  name: string;
  id: string;
  url: string;
  created_at: number;
}

const toPeer = (r: PeerRow): Peer => ({ name: r.name, id: r.id, url: r.url, createdAt: r.created_at });

export function listPeers(cat: Catalog): Peer[] {
  return cat.db.all<PeerRow>('SELECT * FROM peers ORDER BY name').map(toPeer);
}

export function findPeerById(cat: Catalog, id: string): Peer | undefined {
  const r = cat.db.get<PeerRow>('SELECT * FROM peers WHERE id = ?', id);
  return r ? toPeer(r) : undefined;
}

export function findPeer(cat: Catalog, name: string): Peer | undefined {
  const r = cat.db.get<PeerRow>('SELECT * FROM peers WHERE name = ?', name);
  return r ? toPeer(r) : undefined;
}

/** Whether `s` can name a site (the pairing command a refusal names uses it, else NAME). */
function isName(s: string): boolean {
  try {
    parseName(s, 'site');
    return true;
  } catch {
    return false;
  }
}

/** The paired site of that name; refused with what to do when there is none. */
export function getPeer(cat: Catalog, name: string): Peer {
  const p = findPeer(cat, name);
  if (!p) throw new FerryError('PEER_NOT_FOUND', `no paired site ${JSON.stringify(name)}; \`ferry site list\` shows them, \`ferry site add ${isName(name) ? name : 'NAME'} URL --id ID\` pairs one`);
  return p;
}

/** A new pairing (checked by the caller). */
export function insertPeer(cat: Catalog, p: { name: string; id: string; url: string }): void {
  cat.db.run('INSERT INTO peers (name, id, url, created_at) VALUES (?, ?, ?, ?)', p.name, p.id, p.url, cat.now());
}

export function deletePeer(cat: Catalog, name: string): void {
  cat.db.run('DELETE FROM peers WHERE name = ?', name);
}
