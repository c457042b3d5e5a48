// Sites paired with each other, and mirrors created and initialized between
// them, through the real CLI as an operator would.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { KiB, writeVolumeData } from './data.ts';
import { createSite, type TestSite } from './site.ts';

/** Pair two running sites, each pinning the other's id and URL. */
export async function pairSites(a: TestSite, b: TestSite): Promise<void> {
  assert.ok(a.url && b.url, 'both daemons must run before pairing');
  await Promise.all([a.json(['site', 'add', b.name, b.url!, '--id', b.id]), b.json(['site', 'add', a.name, a.url!, '--id', a.id])]);
}

/** Pair two running sites under their names without the test's tag (`seattle-rb` is paired as `seattle`), as an operator would name them. */
export async function pairPlain(a: TestSite, b: TestSite): Promise<void> {
  const plain = (s: TestSite) => s.name.replace(/-.*$/, '');
  await Promise.all([a.json(['site', 'add', plain(b), b.url!, '--id', b.id]), b.json(['site', 'add', plain(a), a.url!, '--id', a.id])]);
}

/** `ferry mirror create VOLUME --to PEER` at `from`, then (unless `initialize: false`) `mirror initialize --wait`. */
export async function createMirror(from: TestSite, volume: string, to: string, o: { args?: string[]; initialize?: boolean } = {}): Promise<void> {
  await from.json(['mirror', 'create', volume, '--to', to, ...(o.args ?? [])]);
  if (o.initialize ?? true) await from.json(['mirror', 'initialize', volume, '--to', to, '--wait']);
}

/**
 * Two running, paired sites: `a` the primary of `vol` (a small volume of random files at `a.dir/data`),
 * mirrored to `b` and initialized. `beforeStart` runs with both daemons stopped (setup in-process).
 * The sites are pushed to `list` for cleanup.
 */
export async function mirroredPair<S extends TestSite = TestSite>(
  list: S[],
  names: [string, string],
  o: { files?: number; fileSize?: number; beforeStart?: (a: S, b: S) => void; create?: (name: string) => Promise<S> } = {},
): Promise<{ a: S; b: S; data: string }> {
  const create = o.create ?? ((name: string) => createSite(name) as Promise<S>);
  const [a, b] = await Promise.all([create(names[0]), create(names[1])]);
  list.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, o.files ?? 2, o.fileSize ?? 128 * KiB);
  a.defineVolume('vol', [data]);
  o.beforeStart?.(a, b);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await createMirror(a, 'vol', b.name);
  return { a, b, data };
}
