// Found by the 12-minute soak of seed 1 (step 970): "a's replica of v1 is not the snapshot it shows",
// right after `mirror initialize v1 --to a`. It was the soak's checker, not ferry: the checkpoint read
// the catalogs once transfers had settled, then ran `ferry verify` at every site, and meanwhile the
// mirror's schedule sent two more snapshots (the kept state of the replay shows the replica is
// exactly the newest of them). The replica was then compared with the snapshot the earlier read
// named. Now the checkpoint reads after `verify`, and a replica is judged only if its row is the same
// after its content was read (test/soak/checker.ts). Here the update runs during `verify` at the
// destination, on real daemons, as the schedule did in the soak.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Checker } from '../soak/checker.ts';
import { World, type CliOutcome, type SoakSite } from '../soak/world.ts';
import { tempDir } from '../soak/harness.ts';
import { cleanupSites, mirroredPair, writeChange, type TestSite } from '../harness/index.ts';

/** The soak's world over two sites of the integration helpers; `duringVerify` runs before `verify` at the destination. */
class RacyWorld extends World {
  duringVerify?: () => Promise<void>;
  override async cli(s: SoakSite, args: string[], o: { killAfterMs?: number; timeoutMs?: number } = {}): Promise<CliOutcome> {
    if (args[0] === 'verify' && s.name === 'b' && this.duringVerify) {
      const f = this.duringVerify;
      this.duringVerify = undefined;
      await f();
    }
    return super.cli(s, args, o);
  }
}

const soakSite = (name: string, d: TestSite): SoakSite => ({ name, dir: d.dir, home: d.home, id: d.id, mounted: false, log: '', offsetMs: 0, stopping: false, downSteps: -1, diskFullSteps: 0, rssMax: 0, usedMax: 0 });

test('an update that lands while a checkpoint runs `verify` is not taken for a replica that differs from its snapshot', async () => {
  const sites: TestSite[] = [];
  const tmp = tempDir('ferry-soak-race-');
  const world = new RacyWorld(tmp.path);
  try {
    const { a, b, data } = await mirroredPair(sites, ['scr-a', 'scr-b'], { files: 2, fileSize: 8 * 1024 });
    // The destination keeps the snapshot it showed before (as the soak's `--keep 4` did), so that
    // the checker can restore it and compare.
    await a.json(['mirror', 'set', 'vol', '--to', b.name, '--keep', '4']);
    world.sites.push(soakSite('a', a), soakSite('b', b));
    const checker = new Checker(1);
    world.duringVerify = async () => {
      writeChange(data, 'late.bin', 4096);
      await a.json(['mirror', 'update', 'vol', '--to', b.name, '--wait']);
    };
    await checker.checkpoint(world, 1);
    assert.equal(world.duringVerify, undefined, 'the update ran during the checkpoint');
    assert.deepEqual(checker.violations.map((v) => `[${v.check}] ${v.message}`), []);
    assert.ok(checker.stats.restores >= 1, 'the replica was judged against its snapshot');

    // And the check still finds a replica that is not its snapshot.
    writeChange(join(await b.memberPath('vol')), 'stray.bin', 1024);
    await checker.checkpoint(world, 2);
    assert.match(checker.violations.map((v) => `[${v.check}] ${v.message}`).join('\n'), /\[replica\] b: the replica of vol \([0-9a-f]+\) is not the snapshot it shows/);
  } finally {
    await world.close();
    await cleanupSites(sites);
    tmp.cleanup();
  }
});
