// An operator in a hurry follows each refusal's advice, in order, on two real
// sites (daemons on loopback, the real CLI): every `ferry ...` command a
// refusal suggests (the last one it names, harness/errors.ts suggestedCommand)
// must be accepted in the state it was given in and make progress, until a
// command succeeds (the mirror updated, the volume replicating the other way
// after a failback, or the replica promoted). Never a loop: a mirror broken
// off by its destination's failover and holding no base (its record made
// again after the baseline, so none was ever completed under it) once had
// `mirror update` advise `mirror initialize` and `mirror initialize` advise a
// bare `mirror update`. The states walked: broken off without a base (told at
// the failover, or learning it from the destination's refusal; either way
// out: failback, or this site staying primary), broken off with its base
// after both sides wrote (split brain), broken off with its base lost at the
// new primary, initialized, paused, an inconsistent replica at the secondary,
// and at the new primary a mirror back to the old one made by hand. A new
// replica the destination cannot make (REPLICA_PATH_INVALID): its directory
// left from a replica removed there (the mirror made again, or kept), or
// holding another volume's member; the advice names the real paths and
// commands at the destination (never a placeholder: the operator moves the
// directory away or binds it, ferry deletes nothing), then the command that
// runs the mirror again here. A failback asked of a mirror that needs a full
// sync, its destination still following: the advice is the full sync itself.
// A bare failback at an old primary never told which of its mirrors'
// destinations took over: it asks them, and names the one that did; told
// that two did (a split brain), it picks neither and names each; the one
// that took over down, it names that one, for when it answers. Asked at the
// new primary, a failback names the one to run at the old primary.
// A mirror that needs a full sync is walked by secondary-recreated.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { cleanupSites, createSite, KiB, pairSites, suggestedCommand, waitFor, writeChange, writeVolumeData, type TestSite } from '../harness/index.ts';
import { assertTreesEqual, type CliResult } from '../helpers.ts';

const sites: TestSite[] = [];
after(() => cleanupSites(sites));

/**
 * Run `first` at `site`, then each command its refusals suggest, until one succeeds. Every command
 * suggested is new (no loop) and at most `max` are run. `wait`: a mirror update or initialize
 * suggested is run with --wait (its outcome, not `queued`). Returns the commands run and the last result.
 */
async function walkAdvice(site: TestSite, first: string[], max = 5, o: { wait?: boolean } = {}): Promise<{ ran: string[][]; last: CliResult }> {
  const ran: string[][] = [];
  const refusals: string[] = [];
  const key = (c: string[]) => c.filter((w) => w !== '--wait').join(' ');
  let cmd = first;
  for (;;) {
    ran.push(cmd);
    const r = await site.ferry([...cmd, '--json']);
    if (r.code === 0) return { ran, last: r };
    refusals.push(`ferry ${cmd.join(' ')} => ${r.json?.error?.message ?? r.stderr}`);
    const next = suggestedCommand(r);
    const seen = ran.some((c) => key(c) === key(next));
    assert.ok(!seen, `the advice loops: \`ferry ${next.join(' ')}\` was refused already\n${refusals.join('\n')}`);
    assert.ok(ran.length < max, `no success after ${max} suggested commands\n${refusals.join('\n')}`);
    const waits = o.wait && next[0] === 'mirror' && (next[1] === 'update' || next[1] === 'initialize') && !next.includes('--wait');
    cmd = waits ? [...next, '--wait'] : next;
  }
}

/** Every `ferry ...` command a refusal names, in order, as the words after `ferry`. */
function namedCommands(r: CliResult): string[][] {
  const message: string = r.json?.error?.message ?? r.stderr;
  return [...message.matchAll(/`ferry ([^`]+)`/g)].map((x) => x[1].trim().split(/\s+/));
}

/** No command names a placeholder (VOL, SITE, PATH, NAME...) for a value known where it was said. */
function assertNoPlaceholder(commands: string[][], allowed: string[] = []): void {
  for (const c of commands) {
    const left = c.filter((w) => /(^|[=:])(VOL|VOLUME|SITE|PATH|PEER|NAME)$/.test(w) && !allowed.includes(w));
    assert.deepEqual(left, [], `\`ferry ${c.join(' ')}\` names a placeholder`);
  }
}

/** `a` is the active secondary of `b`, and b's reverse mirror completed an update (it has a base). */
function assertFollows(a: TestSite, b: TestSite): void {
  const row = a.catalog((db) => db.prepare("SELECT v.role, s.state FROM volumes v JOIN secondaries s ON s.volume = v.name WHERE v.name = 'vol'").get()) as { role: string; state: string } | undefined;
  assert.deepEqual({ ...row }, { role: 'secondary', state: 'active' }, `${a.name} follows ${b.name}`);
  assert.ok(b.mirrorRow('vol', a.name).base, `${b.name}'s mirror back to ${a.name} has a base`);
}

/** Two running paired sites, `vol` at a (a few small files) mirrored to b and baselined. */
async function pair(names: [string, string]): Promise<{ a: TestSite; b: TestSite; data: string }> {
  const [a, b] = await Promise.all([createSite(names[0]), createSite(names[1])]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, 2, 64 * KiB);
  a.defineVolume('vol', [data]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', b.name]);
  await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  return { a, b, data };
}

/** Three running sites, all paired: `vol` at a mirrored to b and c; b knows c as its sibling (a's hello after c's baseline named it). */
async function threeSites(names: [string, string, string]): Promise<{ a: TestSite; b: TestSite; c: TestSite }> {
  const [a, b, c] = await Promise.all(names.map((n) => createSite(n)));
  sites.push(a, b, c);
  writeVolumeData(join(a.dir, 'data'), 2, 64 * KiB);
  a.defineVolume('vol', [join(a.dir, 'data')]);
  await Promise.all([a.start(), b.start(), c.start()]);
  await Promise.all([pairSites(a, b), pairSites(a, c), pairSites(b, c)]);
  for (const to of [b.name, c.name]) {
    await a.json(['mirror', 'create', 'vol', '--to', to]);
    await a.json(['mirror', 'initialize', 'vol', '--to', to, '--wait']);
  }
  await a.json(['mirror', 'update', 'vol', '--to', b.name, '--wait']);
  return { a, b, c };
}

/**
 * threeSites, then a down and b taking over (forced; c re-pointed to it), its notice never reaching
 * a: a's mirrors to b and c stay as they were, neither broken off. a is left stopped.
 */
async function tookOverUntold(names: [string, string, string]): Promise<{ a: TestSite; b: TestSite; c: TestSite }> {
  const { a, b, c } = await threeSites(names);
  await Promise.all([a.stop(), b.stop()]);
  await b.start({ env: { FERRY_TEST_FAULTS: 'dr.failover-notice:fail:times=1000' } });
  await b.json(['failover', 'vol', '--force']);
  return { a, b, c };
}

/** The mirror at `a` made again (no base), then its destination fails over (`notify`: a is told). */
async function brokenOffWithoutBase(a: TestSite, b: TestSite, notify: boolean): Promise<void> {
  await a.json(['mirror', 'remove', 'vol', '--to', b.name]);
  await a.json(['mirror', 'create', 'vol', '--to', b.name]);
  assert.equal(a.mirrorRow('vol', b.name).base, null);
  if (!notify) await a.stop();
  await b.json(['failover', 'vol', ...(notify ? [] : ['--force'])]);
  if (!notify) await a.start();
}

test('broken off by a failover, no base: update and initialize advise a failback, which runs', async () => {
  const { a, b } = await pair(['east', 'west']);
  await brokenOffWithoutBase(a, b, true);
  assert.equal(a.mirrorRow('vol', b.name).state, 'broken-off');
  // From `mirror update`: its advice (a failback, in full: there is no base) is accepted.
  const { ran } = await walkAdvice(a, ['mirror', 'update', 'vol', '--to', b.name, '--wait']);
  assert.deepEqual(ran.at(-1)!.slice(0, 2), ['failback', 'vol']);
  assertFollows(a, b);
});

test('broken off, no base, from `mirror initialize` and told only by the refusal', async () => {
  const { a, b } = await pair(['north', 'south']);
  await brokenOffWithoutBase(a, b, false);
  // a was not told: its first initialize learns it from b's refusal (FAILED_OVER), the rest follows the advice.
  const { ran } = await walkAdvice(a, ['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  assert.deepEqual(ran.at(-1)!.slice(0, 2), ['failback', 'vol']);
  assertFollows(a, b);
});

test('broken off with its base, both sides written (a forced failover a learns of late): the advice is the failback, which keeps its writes', async () => {
  const { a, b, data } = await pair(['up', 'down']);
  await a.stop();
  await b.json(['failover', 'vol', '--force']);
  writeChange(data, 'divergent.bin', 4 * KiB);
  await a.start();
  // Whichever tells a first (b's refusal of the update, or b's daemon delivering its notice late), the advice is a failback.
  const { ran } = await walkAdvice(a, ['mirror', 'update', 'vol', '--to', b.name, '--wait']);
  assert.deepEqual(ran.at(-1)!.slice(0, 2), ['failback', 'vol']);
  assertFollows(a, b);
  assert.ok(a.snapshotRows('vol').some((s) => s.name?.startsWith('failback-kept-')), 'its writes are kept in a snapshot');
});

test('initialized: initialize advises the update, which runs; paused: the advice resumes it, and the update then runs', async () => {
  const { a, b, data } = await pair(['left', 'right']);
  writeChange(data, 'first.bin', 4 * KiB);
  const base0 = a.mirrorRow('vol', b.name).base;
  const again = await walkAdvice(a, ['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  assert.deepEqual(again.ran.at(-1), ['mirror', 'update', 'vol', '--to', b.name]);
  // Queued to the daemon (the advice names no --wait): it completes.
  await waitFor('the advised update to complete', () => {
    const m = a.mirrorRow('vol', b.name);
    return m.state === 'idle' && m.base !== base0;
  });
  assertTreesEqual(await b.memberPath('vol'), data);
  await a.json(['mirror', 'pause', 'vol', '--to', b.name]);
  writeChange(data, 'more.bin', 4 * KiB);
  // Asked of the daemon without --wait, the refusal is said now, not `queued` and refused in the background.
  await a.refused(['mirror', 'update', 'vol', '--to', b.name], 4, 'MIRROR_STATE', /is paused/);
  const update = ['mirror', 'update', 'vol', '--to', b.name, '--wait'];
  const { ran } = await walkAdvice(a, update);
  assert.deepEqual(ran.at(-1), ['mirror', 'resume', 'vol', '--to', b.name]);
  const r = await a.json(update);
  assert.equal(r.applied, true);
});

test('an inconsistent replica (an apply failed at the secondary): failover advises --force, which promotes it', async (t) => {
  const { a, b, data } = await pair(['fore', 'aft']);
  const replica = await b.memberPath('vol');
  const locked = join(replica, readdirSync(replica).sort()[0]);
  if (spawnSync('chattr', ['+i', locked]).status !== 0) return t.skip('chattr +i is not available here (needs root and a filesystem with inode flags)');
  try {
    // The apply cannot replace the immutable file: it fails, the replica stays inconsistent.
    writeFileSync(join(data, basename(locked)), 'changed\n');
    const r = await a.ferry(['mirror', 'update', 'vol', '--to', b.name, '--wait', '--json']);
    assert.notEqual(r.code, 0, `the apply should fail: ${r.stdout}`);
    assert.equal(b.secondaryRow('vol')?.consistent, false);
    const { ran } = await walkAdvice(b, ['failover', 'vol']);
    assert.deepEqual(ran.at(-1), ['failover', 'vol', '--force']);
  } finally {
    spawnSync('chattr', ['-i', locked]);
  }
  const role = b.catalog((db) => db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get()) as { role: string };
  assert.equal(role.role, 'primary');
  assert.equal(a.mirrorRow('vol', b.name).state, 'broken-off', `${a.name} was told`);
});

test('broken off, no base: the other way the refusal names, this site staying primary, is accepted too', async () => {
  const { a, b, data } = await pair(['here', 'there']);
  await brokenOffWithoutBase(a, b, true);
  const refusal = await a.refused(['mirror', 'update', 'vol', '--to', b.name, '--wait'], 4, 'MIRROR_STATE', /broken off/);
  // The commands before the failback, in order: the first at b, the others here.
  const named = [...(refusal.json.error.message as string).matchAll(/`ferry ([^`]+)`/g)].map((x) => x[1].split(/\s+/));
  assert.deepEqual(named.map((c) => c.slice(0, 2).join(' ')), ['volume remove', 'mirror remove', 'mirror create', 'mirror initialize', 'failback vol']);
  const files = dirname(await b.memberPath('vol'));
  await b.json(named[0]);
  renameSync(files, `${files}.kept`);
  for (const cmd of named.slice(1, 3)) await a.json(cmd);
  await a.json([...named[3], '--wait']);
  assertTreesEqual(await b.memberPath('vol'), data);
  assert.ok(a.mirrorRow('vol', b.name).base, 'the new mirror has a base');
});

test('broken off with its base, the base then lost at the new primary: update advises the failback, which names --full; the mirror stays broken off', async () => {
  const { a, b } = await pair(['old', 'new']);
  const base = a.mirrorRow('vol', b.name).base!;
  await b.json(['failover', 'vol']);
  b.catalog((db) => db.prepare('DELETE FROM holds WHERE snapshot = ?').run(base), { write: true });
  await b.json(['snapshot', 'delete', 'vol', base]);
  const refusal = await a.refused(['failback', 'vol'], 4, 'NEEDS_FULL_SYNC');
  assert.equal(a.mirrorRow('vol', b.name).state, 'broken-off', 'a refused failback leaves the mirror broken off');
  assert.deepEqual(suggestedCommand(refusal), ['failback', 'vol', '--to', b.name, '--full']);
  const { ran } = await walkAdvice(a, ['mirror', 'update', 'vol', '--to', b.name, '--wait']);
  assert.deepEqual(ran.slice(1), [['failback', 'vol', '--to', b.name], ['failback', 'vol', '--to', b.name, '--full']]);
  assertFollows(a, b);
});

test('failed over: a mirror back made by hand at the new primary is refused naming the failback at the old primary, which then runs', async () => {
  const { a, b, data } = await pair(['was', 'now']);
  await b.json(['failover', 'vol']);
  await b.json(['mirror', 'create', 'vol', '--to', a.name]);
  const refusal = await b.refused(['mirror', 'initialize', 'vol', '--to', a.name, '--wait'], 4, 'NOT_AUTHORIZED', /took it over/);
  const named = [...(refusal.json.error.message as string).matchAll(/`ferry ([^`]+)`/g)].map((x) => x[1].split(/\s+/));
  // The last one, run here (named as this site calls a: the hello says it), never a failback here: b would yield to a.
  assert.deepEqual(named, [['failback', 'vol'], ['mirror', 'remove', 'vol', '--to', a.name]]);
  // Its update is refused the same way, not sent round to initialize again.
  await b.refused(['mirror', 'update', 'vol', '--to', a.name, '--wait'], 4, 'MIRROR_STATE', /no baseline yet/);
  await b.json(named[1]);
  await a.json(named[0]);
  assertFollows(a, b);
  assertTreesEqual(data, await b.memberPath('vol'));
});

test('failed over, a mirror back made by hand and kept: the failback at the old primary uses it and ends the relation it took over', async () => {
  const { a, b, data } = await pair(['then', 'since']);
  await b.json(['failover', 'vol']);
  await b.json(['mirror', 'create', 'vol', '--to', a.name]);
  await a.json(['failback', 'vol']);
  assertFollows(a, b);
  assertTreesEqual(data, await b.memberPath('vol'));
  assert.equal(b.catalog((db) => db.prepare("SELECT state FROM secondaries WHERE volume = 'vol'").get()), undefined, `${b.name} no longer holds a relation to ${a.name} as its old primary`);
  const st = await b.volumeStatus('vol');
  assert.deepEqual(st.splitBrains ?? [], [], 'no split brain shows');
});

test('a replica directory left at the destination (mirror and secondary removed, the mirror made again): the advice names it, to move away, and the initialize it names then runs; nothing there is deleted', async () => {
  const { a, b, data } = await pair(['source', 'leftover']);
  const replica = await b.memberPath('vol');
  const base = dirname(replica);
  await a.json(['mirror', 'remove', 'vol', '--to', b.name]);
  await b.json(['volume', 'remove', 'vol', '--force']);
  writeFileSync(join(replica, 'own.txt'), 'written at b after the volume was removed\n');
  await a.json(['mirror', 'create', 'vol', '--to', b.name]);
  // As the soak saw it: the update advises the initialize, which b refuses (the directory is there).
  const update = await a.refused(['mirror', 'update', 'vol', '--to', b.name, '--wait'], 4, 'MIRROR_STATE', /no baseline yet/);
  const initialize = suggestedCommand(update);
  const refusal = await a.refused([...initialize, '--wait'], 4, 'REPLICA_PATH_INVALID', /exists already/);
  const message = refusal.json.error.message as string;
  assert.ok(message.includes(`move ${base} away`), message);
  const named = namedCommands(refusal);
  assertNoPlaceholder(named);
  // At b: bind the directory as it stands (the other way); then here, last: the initialize again.
  assert.deepEqual(named, [['volume', 'create', 'vol', '--member', `data=${replica}`, '--secondary'], initialize]);
  assert.ok(a.mirrorRow('vol', b.name).lastError?.message.endsWith(`\`ferry ${initialize.join(' ')}\``), "the mirror's recorded error gives the same advice");
  // As it says, at b: the directory moved away; then, here, the command named last.
  renameSync(base, `${base}.old`);
  await a.json([...named.at(-1)!, '--wait']);
  assertTreesEqual(await b.memberPath('vol'), data);
  assert.equal(readFileSync(join(`${base}.old`, 'data', 'own.txt'), 'utf8'), 'written at b after the volume was removed\n');
});

test('the secondary removed at the destination, its replica left, the mirror kept: the update names the bind there, and the walk from it ends replicating (the files there kept in a snapshot)', async () => {
  const { a, b, data } = await pair(['kept', 'rebound']);
  const replica = await b.memberPath('vol');
  await b.json(['volume', 'remove', 'vol', '--force']);
  writeChange(data, 'later.bin', 4 * KiB);
  const refusal = await a.refused(['mirror', 'update', 'vol', '--to', b.name, '--wait'], 4, 'REPLICA_PATH_INVALID', /exists already/);
  const named = namedCommands(refusal);
  assertNoPlaceholder(named);
  // The mirror still has its base: what runs it again here is an update.
  assert.deepEqual(named, [['volume', 'create', 'vol', '--member', `data=${replica}`, '--secondary'], ['mirror', 'update', 'vol', '--to', b.name]]);
  await b.json(named[0]);
  // The update finds the base gone there (a full sync), the initialize finds files no apply wrote
  // (kept in a snapshot there), and the forced run it names replaces them.
  const { ran } = await walkAdvice(a, [...named[1], '--wait'], 5, { wait: true });
  assert.deepEqual(ran.slice(1, 2), [['mirror', 'initialize', 'vol', '--to', b.name, '--wait']]);
  assert.ok(ran.at(-1)!.includes('--force'), `the walk ends in the forced run that replaces the files there: ${JSON.stringify(ran)}`);
  assert.equal(a.mirrorRow('vol', b.name).state, 'idle');
  assertTreesEqual(replica, data);
  assert.ok(b.snapshotRows('vol').some((s) => s.name?.startsWith('replica-writes-')), 'the files found there are kept in a snapshot');
});

test("a replica directory at the destination holding another volume's member: the advice is another volume name there, and nothing of that volume is touched", async () => {
  const [a, b] = await Promise.all([createSite('wants'), createSite('holds')]);
  sites.push(a, b);
  const data = join(a.dir, 'data');
  writeVolumeData(data, 2, 64 * KiB);
  a.defineVolume('vol', [data]);
  // At b, a volume of its own made under the replica root, where a replica of vol would go.
  const own = join(b.home, 'replicas', 'vol', 'own');
  mkdirSync(own, { recursive: true });
  writeFileSync(join(own, 'f.txt'), "b's own\n");
  b.defineVolume('mine', [own]);
  await Promise.all([a.start(), b.start()]);
  await pairSites(a, b);
  await a.json(['mirror', 'create', 'vol', '--to', b.name]);
  const refusal = await a.refused(['mirror', 'initialize', 'vol', '--to', b.name, '--wait'], 4, 'REPLICA_PATH_INVALID', /holds member own of volume mine/);
  const named = namedCommands(refusal);
  // NAME: the other volume name is the operator's choice.
  assertNoPlaceholder(named, [`${b.name}:NAME`]);
  assert.deepEqual(named, [['mirror', 'remove', 'vol', '--to', b.name], ['mirror', 'create', 'vol', '--to', `${b.name}:NAME`]]);
  await a.json(named[0]);
  await a.json(named[1].map((w) => w.replace(/:NAME$/, ':vol2')));
  await a.json(['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  assertTreesEqual(join(b.home, 'replicas', 'vol2', 'data'), data);
  assert.equal(readFileSync(join(own, 'f.txt'), 'utf8'), "b's own\n");
});

test('a failback asked of a mirror that needs a full sync, its destination still following: refused, naming the full sync itself, and the walk from it ends replicating', async () => {
  const { a, b, data } = await pair(['asks', 'follows']);
  const replica = await b.memberPath('vol');
  // b loses the base: its volume removed and bound again over the replica (secondary-recreated.test.ts).
  await b.json(['volume', 'remove', 'vol', '--force']);
  await b.json(['volume', 'create', 'vol', '--member', replica, '--secondary']);
  await a.refused(['mirror', 'update', 'vol', '--to', b.name, '--wait'], 4, 'MIRROR_STATE', /no longer has the base/);
  assert.equal(a.mirrorRow('vol', b.name).state, 'needs-full-sync');
  writeChange(data, 'meanwhile.bin', 4 * KiB);
  // Nothing to fail back from (b follows a); the advice is the initialize, not an update that would only say so.
  const { ran } = await walkAdvice(a, ['failback', 'vol'], 5, { wait: true });
  assert.deepEqual(ran[1], ['mirror', 'initialize', 'vol', '--to', b.name, '--wait']);
  assert.equal(a.mirrorRow('vol', b.name).state, 'idle');
  assertTreesEqual(replica, data);
  assert.equal((a.catalog((db) => db.prepare("SELECT role FROM volumes WHERE name = 'vol'").get()) as { role: string }).role, 'primary', `${a.name} stays primary`);
});

test('three sites, a lost and b taking over while c was down: an update of c asked at b advises the re-point; a, back, is told by c to fail back to b; each advice runs', async () => {
  const { a, b, c } = await threeSites(['lost', 'took', 'sibling']);
  // a is lost; c is down while b takes over, so b cannot re-point it then.
  await Promise.all([a.stop(), c.stop()]);
  const fo = await b.json(['failover', 'vol', '--force']);
  assert.equal(fo.repointed?.[0]?.outcome, 'failed', JSON.stringify(fo.repointed));
  await c.start();
  // The wrong order at b: an update of c before its re-point. The advice is the re-point, which runs.
  const atB = await walkAdvice(b, ['mirror', 'update', 'vol', '--to', c.name, '--wait']);
  assert.deepEqual(atB.ran.slice(1), [['mirror', 'repoint', 'vol', '--to', c.name]]);
  assertFollows(c, b);
  // a comes back primary beside b, and updates c: c follows b now, and says so; the advice is the failback to b.
  await a.start();
  const atA = await walkAdvice(a, ['mirror', 'update', 'vol', '--to', c.name, '--wait']);
  assert.deepEqual(atA.ran.slice(1), [['failback', 'vol', '--to', b.name]]);
  assertFollows(a, b);
  assertFollows(c, b);
  assert.deepEqual(a.catalog((db) => db.prepare("SELECT peer FROM mirrors WHERE volume = 'vol'").all()), [], `${a.name}'s stale mirror to ${c.name} is gone`);
  assertTreesEqual(await c.memberPath('vol'), await b.memberPath('vol'));
});

test('three sites, b took over and c was not re-pointed: a mirror to c made by hand at b is refused by c naming the re-point, which then runs', async () => {
  const { a, b, c } = await threeSites(['gone', 'primary', 'follower']);
  await a.stop();
  await b.json(['failover', 'vol', '--force', '--no-repoint']);
  await b.json(['mirror', 'create', 'vol', '--to', c.name]);
  const refusal = await b.refused(['mirror', 'initialize', 'vol', '--to', c.name, '--wait'], 4, 'NOT_AUTHORIZED', /already the secondary of site/);
  const named = namedCommands(refusal);
  assert.deepEqual(named, [['mirror', 'remove', 'vol', '--to', c.name], ['mirror', 'repoint', 'vol', '--to', c.name]]);
  for (const cmd of named) await b.json(cmd);
  assertFollows(c, b);
});

test('three sites, b took over while a was down and a was never told: a bare failback at a names the site that took over, and the failback it names runs', async () => {
  const { a, b, c } = await tookOverUntold(['unaware', 'successor', 'bystander']);
  await a.start();
  assert.deepEqual([b.name, c.name].map((n) => a.mirrorRow('vol', n).state === 'broken-off'), [false, false]);
  // Which site took over is not in a's catalog, but its mirrors' destinations can say: b is primary, c follows b.
  const refusal = await a.refused(['failback', 'vol'], 4, 'MIRROR_STATE', new RegExp(`${b.name} holds it as primary: it took it over; ${c.name} `));
  assert.deepEqual(namedCommands(refusal), [['failback', 'vol', '--to', b.name]]);
  assert.equal(a.mirrorRow('vol', b.name).state, 'idle', 'the refusal changed nothing here');
  const { ran, last } = await walkAdvice(a, ['failback', 'vol']);
  assert.deepEqual(ran, [['failback', 'vol'], ['failback', 'vol', '--to', b.name]]);
  assertNoPlaceholder(ran);
  assert.equal(last.json.plan.newPrimary, b.name);
  assertFollows(a, b);
});

test('three sites, b and c both took over while a was down (a split brain): a bare failback at a picks neither, naming the failback to each, and the one it names last runs', async () => {
  const { a, b, c } = await threeSites(['both-lost', 'took-first', 'took-too']);
  await a.stop();
  await b.json(['failover', 'vol', '--force', '--no-repoint']);
  await c.json(['failover', 'vol', '--force']);
  await a.start();
  // Rerun, each failover tells a now (the daemons would, after their backoff): both mirrors at a are broken off.
  for (const s of [b, c]) assert.equal((await s.json(['failover', 'vol'])).notified, true);
  assert.deepEqual([b.name, c.name].map((n) => a.mirrorRow('vol', n).state), ['broken-off', 'broken-off']);
  const refusal = await a.refused(['failback', 'vol'], 4, 'MIRROR_STATE', /each hold it as primary \(a split brain\)/);
  assert.deepEqual(namedCommands(refusal).sort(), [['failback', 'vol', '--to', b.name], ['failback', 'vol', '--to', c.name]].sort());
  const { ran } = await walkAdvice(a, ['failback', 'vol']);
  const to = ran.at(-1)!.at(-1)!;
  assert.deepEqual(ran, [['failback', 'vol'], ['failback', 'vol', '--to', to]]);
  assertFollows(a, to === b.name ? b : c);
});

test('three sites, b took over and a was never told, b down when a fails back: the refusal names the failback to b for when it answers, which then runs', async () => {
  const { a, b, c } = await tookOverUntold(['returns', 'away', 'follows-b']);
  await b.stop();
  await a.start();
  // c follows b now (re-pointed) and says it relates to a no more; b cannot be asked: it is the one to name.
  const refusal = await a.refused(['failback', 'vol'], 4, 'MIRROR_STATE', new RegExp(`${c.name} relates to this site no more[\\s\\S]*${b.name} \\(.*\\) could not be asked`));
  assert.deepEqual(namedCommands(refusal), [['failback', 'vol', '--to', b.name]]);
  await b.start();
  await a.json(namedCommands(refusal)[0]);
  assertFollows(a, b);
});

test('failed over: a failback asked at the new primary (no mirror there) names the failback at the old primary, which then runs', async () => {
  const { a, b, data } = await pair(['yielding', 'took']);
  await b.json(['failover', 'vol']);
  const refusal = await b.refused(['failback', 'vol'], 4, 'MIRROR_STATE', new RegExp(`took vol over from ${a.name}`));
  // Run there, at a: not a failback here with a placeholder.
  const named = namedCommands(refusal);
  assert.deepEqual(named, [['failback', 'vol']]);
  await a.json(named[0]);
  assertFollows(a, b);
  assertTreesEqual(data, await b.memberPath('vol'));
});
