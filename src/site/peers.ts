// Paired sites. Pairing is explicit on both sides (`ferry site add NAME URL
// --id ID`): each site pins the other's certificate fingerprint, and the
// daemon refuses any TLS peer whose fingerprint is not in its catalog
// (catalog/peers.ts: the rows, and looking a peer up).
import { FerryError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';
import { parseSiteId } from '../transport/identity.ts';
import type { Site } from './site.ts';
import { countMirrorsTo } from '../catalog/mirrors.ts';
import { deletePeer, findPeer, findPeerById, getPeer, insertPeer, type Peer } from '../catalog/peers.ts';

export type { Peer } from '../catalog/peers.ts';

export function parsePeerUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FerryError('USAGE', `site URL ${JSON.stringify(url)} is not a URL; use https://HOST:PORT (the address of the peer's \`ferry serve --listen HOST:PORT\`)`);
  }
  if (u.protocol !== 'https:' || !u.port || u.pathname !== '/' || u.search || u.username) {
    throw new FerryError('USAGE', `site URL ${url} must be https://HOST:PORT with nothing after the port`);
  }
  return `https://${u.host}`;
}

export function addPeer(site: Site, name: string, url: string, id: string): Peer {
  parseName(name, 'site');
  const pid = parseSiteId(id);
  const purl = parsePeerUrl(url);
  if (pid === site.id) throw new FerryError('USAGE', `${id} is this site's own id; pair with the other site's id (\`ferry info\` there)`);
  if (findPeer(site.catalog, name)) throw new FerryError('PEER_EXISTS', `a site named ${name} is already paired; \`ferry site remove ${name}\` first to re-pair it`);
  const byId = findPeerById(site.catalog, pid);
  if (byId) throw new FerryError('PEER_EXISTS', `site id ${id} is already paired as ${byId.name}`);
  site.catalog.tx(() => {
    insertPeer(site.catalog, { name, id: pid, url: purl });
    site.event({ kind: 'site.add', outcome: 'ok', detail: { name, id: pid, url: purl } });
  });
  return getPeer(site.catalog, name);
}

export function removePeer(site: Site, name: string): void {
  getPeer(site.catalog, name);
  const mirrors = countMirrorsTo(site.catalog, name);
  if (mirrors > 0) throw new FerryError('MIRROR_EXISTS', `site ${name} still has ${mirrors} mirror(s); remove them first (\`ferry mirror list\`)`);
  site.catalog.tx(() => {
    deletePeer(site.catalog, name);
    site.event({ kind: 'site.remove', outcome: 'ok', detail: { name } });
  });
}
