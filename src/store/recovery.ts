// Checks of the pack files against the index: startup recovery (recoverPacks:
// the scan of the pack directory), and the check of one pack file's size that a
// peer's durability question repeats (packFileSound).
//
// Must never drop the rows of a live pack whose file is missing or damaged:
// it is marked lost (its objects count as absent, so they are stored again)
// and `ferry verify` still names what it broke. Never deletes a pack file that
// has a row, or one a writer of this process is still filling.
import * as fs from 'node:fs';
import { wrapIoError } from '../core/errors.ts';
import type { ObjectIndex } from './object-index.ts';
import type { PackFiles } from './pack-files.ts';
import { recordLength } from './pack.ts';
import type { LostProblem, RecoveryReport } from './types.ts';

/** What is wrong with a pack's file against its recorded size; undefined when it is there at that size. Throws raw errors other than ENOENT. */
export function packFileProblem(files: PackFiles, name: string, size: number): { problem: 'missing' | 'truncated' | 'oversized'; actual: number; detail: string } | undefined {
  let actual = -1;
  try {
    actual = fs.statSync(files.packPath(name)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (actual === size) return undefined;
  const problem = actual < 0 ? 'missing' : actual < size ? 'truncated' : 'oversized';
  return { problem, actual, detail: actual < 0 ? 'the pack file is missing' : `the pack file is ${actual} bytes, the index recorded ${size}` };
}

/** The pack's file is there at its recorded size; if not, the pack is marked lost. */
export function packFileSound(index: ObjectIndex, files: PackFiles, packId: number, markLost: RecoveryParts['markLost']): boolean {
  const row = index.livePack(packId);
  if (!row) return false;
  let bad: ReturnType<typeof packFileProblem>;
  try {
    bad = packFileProblem(files, row.name, row.size);
  } catch (err) {
    throw wrapIoError(err, `inspecting pack ${row.name}`);
  }
  if (!bad) return true;
  markLost(packId, bad.problem, bad.detail);
  return false;
}

export interface RecoveryParts {
  index: ObjectIndex;
  files: PackFiles;
  /** packs this process's writers created and have not indexed or removed yet */
  unindexed: Set<string>;
  /** GC's steps 2 and 3 (PackStore.removeObsoletePacks) */
  removeObsoletePacks: () => string[];
  /** marks a pack lost (PackStore counts it as a removal) */
  markLost: (packId: number, problem: LostProblem, detail: string) => boolean;
}

/**
 * Finishes an interrupted GC (obsolete packs), deletes pack files that were
 * never indexed, and reports live packs whose file is missing or has the
 * wrong size, marking them lost. A lost pack whose file is back at its size
 * counts again.
 */
export function recoverPacks(p: RecoveryParts): RecoveryReport {
  const { index, files } = p;
  const report: RecoveryReport = { orphanPacksDeleted: [], obsoletePacksRemoved: [], damagedPacks: [], strayFiles: [], packsFound: [] };
  try {
    report.obsoletePacksRemoved = p.removeObsoletePacks();
    const known = index.packNames();
    const onDisk = files.list();
    report.strayFiles = onDisk.stray;
    report.orphanPacksDeleted = onDisk.packs.filter((n) => !known.has(n) && !p.unindexed.has(n)).sort();
    files.unlink(report.orphanPacksDeleted);
    const lostBefore = new Set(index.listLostPacks().map((l) => l.id));
    for (const id of lostBefore) index.knowLost(id);
    for (const pack of index.listPacks()) {
      if (pack.state !== 'live') continue;
      const bad = packFileProblem(files, pack.name, pack.size);
      if (!bad) {
        if (lostBefore.has(pack.id) && index.clearLostFileMark(pack.id)) report.packsFound.push(pack.name);
        continue;
      }
      const affected = bad.problem === 'oversized' ? 0 : index.objectsBeyond(pack.id, Math.max(bad.actual, 0), recordLength(0));
      report.damagedPacks.push({ pack: pack.name, id: pack.id, problem: bad.problem, expectedSize: pack.size, actualSize: bad.actual, objectsAffected: affected });
      p.markLost(pack.id, bad.problem, bad.detail);
    }
  } catch (err) {
    throw wrapIoError(err, 'recovering the object store');
  }
  return report;
}
