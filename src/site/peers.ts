// Paired sites. Pairing is explicit on both sides (`ferry site add NAME URL
// --id ID`): each site pins the other's certificate fingerprint, and the
// daemon refuses any TLS peer whose fingerprint is not in this table.
import { FerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import { parseSiteId } from './identity.ts';
import type { Site } from './site.ts';

export interface Peer {
  name: string;
  id: string;
  url: string;
  createdAt: number;
}

export function parsePeerUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FerryError('USAGE', `site URL ${JSON.stringify(url)} is not a URL; use https://HOST:PORT (the peer's \`ferry serve --listen\`)`);
  }
  if (u.protocol !== 'https:' || !u.port || u.pathname !== '/' || u.search || u.username) {
    throw new FerryError('USAGE', `site URL ${url} must be https://HOST:PORT with nothing after the port`);
  }
  return `https://${u.host}`;
}

const row = (r: { name: string; id: string; url: string; created_at: number }): Peer => ({ name: r.name, id: r.id, url: r.url, createdAt: r.created_at });

export function listPeers(site: Site): Peer[] {
  return site.db.all<{ name: string; id: string; url: string; created_at: number }>('SELECT * FROM peers ORDER BY name').map(row);
}

export function findPeerById(site: Site, id: string): Peer | undefined {
  const r = site.db.get<{ name: string; id: string; url: string; created_at: number }>('SELECT * FROM peers WHERE id = ?', id);
  return r ? row(r) : undefined;
}

export function getPeer(site: Site, name: string): Peer {
  const r = site.db.get<{ name: string; id: string; url: string; created_at: number }>('SELECT * FROM peers WHERE name = ?', name);
  if (!r) throw new FerryError('PEER_NOT_FOUND', `no paired site ${JSON.stringify(name)}; \`ferry site list\` shows them, \`ferry site add NAME URL --id ID\` pairs one`);
  return row(r);
}

export function addPeer(site: Site, name: string, url: string, id: string): Peer {
  parseName(name, 'site');
  const pid = parseSiteId(id);
  const purl = parsePeerUrl(url);
  if (pid === site.id) throw new FerryError('USAGE', `${id} is this site's own id; pair with the other site's id (\`ferry info\` there)`);
  const byName = site.db.get<{ id: string }>('SELECT id FROM peers WHERE name = ?', name);
  if (byName) throw new FerryError('PEER_EXISTS', `a site named ${name} is already paired; \`ferry site remove ${name}\` first to re-pair it`);
  const byId = site.db.get<{ name: string }>('SELECT name FROM peers WHERE id = ?', pid);
  if (byId) throw new FerryError('PEER_EXISTS', `site id ${id} is already paired as ${byId.name}`);
  site.db.tx(() => {
    site.db.run('INSERT INTO peers (name, id, url, created_at) VALUES (?, ?, ?, ?)', name, pid, purl, site.clock.now());
    site.event({ kind: 'site.add', outcome: 'ok', detail: { name, id: pid, url: purl } });
  });
  return getPeer(site, name);
}

export function removePeer(site: Site, name: string): void {
  getPeer(site, name);
  const mirrors = site.db.get<{ n: number }>('SELECT count(*) AS n FROM mirrors WHERE peer = ?', name)!.n;
  if (mirrors > 0) throw new FerryError('MIRROR_EXISTS', `site ${name} still has ${mirrors} mirror(s); remove them first (\`ferry mirror list\`)`);
  site.db.tx(() => {
    site.db.run('DELETE FROM peers WHERE name = ?', name);
    site.event({ kind: 'site.remove', outcome: 'ok', detail: { name } });
  });
}
