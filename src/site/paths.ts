// Where things live at a site, and the rules their paths keep with each
// other: members (of every volume, whatever its role), the replica root
// (where `hello` makes new secondaries), link copies, and the site's home
// (catalog, store, identity). A path belongs to one of them only: a member
// must not contain another member, the home or the replica root; the replica
// root must not lie inside a member (a new replica would be made inside that
// member's data, and captured with it) nor inside the home (except the
// default, <home>/replicas); a link copy overlaps none of them.
//
// Owns: those rules and the canonical form paths are compared in. Must
// never: write anything, or follow a path the caller did not give.
import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { listLinks } from '../catalog/links.ts';
import { readMeta } from '../catalog/meta.ts';
import { allMembers } from '../catalog/volumes.ts';
import type { Site } from './site.ts';

/** `inner` is `outer` or lies below it (both canonical). */
export function within(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);
}

/** Either path is, or lies below, the other. */
export function overlaps(a: string, b: string): boolean {
  return within(a, b) || within(b, a);
}

/**
 * The path as members are recorded (realpath, so that `/srv` behind a symlink compares like with
 * like), for a path that may not exist yet: its deepest existing ancestor resolved, the rest appended.
 */
export function canonicalPath(p: string): string {
  const abs = resolve(p);
  const rest: string[] = [];
  for (let at = abs; ; at = dirname(at)) {
    try {
      return join(realpathSync(at), ...rest.reverse());
    } catch {
      if (dirname(at) === at) return abs;
      rest.push(basename(at));
    }
  }
}

/** Where new secondaries are made: the site's `replicaRoot` setting, or <home>/replicas. */
export function replicaRoot(site: Site): string {
  return readMeta(site.catalog, 'replica_root') ?? site.paths.replicas;
}

export interface PathOwner {
  /** what it is, for messages: `member data of volume app`, `link /srv/test` */
  what: string;
  path: string;
}

/** Every member of every volume at the site, and every link copy, with what each is. */
export function sitePathOwners(site: Site): { members: PathOwner[]; links: PathOwner[] } {
  const members = allMembers(site.catalog).map((m) => ({ what: `member ${m.name} of volume ${m.volume}`, path: m.path }));
  const links = listLinks(site.catalog).map((l) => ({ what: `link ${l.path}`, path: l.path }));
  return { members, links };
}

/**
 * Why `root` cannot be the site's replica root, or undefined: it lies in the home (other than the
 * default <home>/replicas) or contains it; it is, or lies inside, a member (`members`); it overlaps
 * a link copy (`links`). The message names the path in the way and says what to do.
 */
export function replicaRootProblem(site: Site, root: string, o: { members: PathOwner[]; links: PathOwner[] }): string | undefined {
  const r = canonicalPath(root);
  const home = canonicalPath(site.paths.home);
  if (r !== canonicalPath(site.paths.replicas) && overlaps(r, home)) {
    return `replica root ${root} overlaps the site home ${site.paths.home}: use a directory outside the home, or leave replicaRoot out for the default (${site.paths.replicas})`;
  }
  for (const m of o.members) {
    if (within(r, m.path)) {
      return `replica root ${root} lies inside ${m.what} (${m.path}): new replicas would be made inside that member's data (and captured with it); set replicaRoot to a directory outside every member, or leave it out for the default (${site.paths.replicas})`;
    }
  }
  for (const l of o.links) {
    if (overlaps(r, l.path)) {
      return `replica root ${root} overlaps ${l.what}: a link copy is replaced whole when refreshed, and a replica made under it would go with it; choose a replica root apart from every link`;
    }
  }
  return undefined;
}
