// Verify: read every object that snapshots reference, check it against its
// hash, and name the snapshots and paths that a damaged or missing object
// breaks. Each object is read once however many snapshots share it.
import type { ObjectId } from '../core/ids.ts';
import type { ObjectReader } from '../store/types.ts';
import { walkSnapshot, type VisitedObject } from './graph.ts';

export interface DamagedObject {
  id: ObjectId;
  kind: string;
  error: string;
  /** where it is used: snapshot id, member, path (first few) */
  usedBy: Array<{ snapshot: string; member: string; path: string }>;
}

export interface VerifyReport {
  snapshots: number;
  objectsChecked: number;
  bytesChecked: number;
  damaged: DamagedObject[];
  /** snapshots with at least one damaged object */
  damagedSnapshots: string[];
}

const MAX_USES = 20;

export function verifySnapshots(store: ObjectReader, snapshots: Array<{ id: string; manifest: ObjectId }>, onProgress?: (checked: number) => void): VerifyReport {
  // chunks read and found sound
  const ok = new Set<string>();
  // metadata objects whose whole subgraph is sound: skipped when met again
  const clean = new Set<string>();
  // metadata objects that read fine but have damage below: walked again wherever they are
  // met (their sound parts are not re-read), so every snapshot and path they break is named
  const dirty = new Set<string>();
  const bad = new Map<string, DamagedObject>();
  const report: VerifyReport = { snapshots: snapshots.length, objectsChecked: 0, bytesChecked: 0, damaged: [], damagedSnapshots: [] };
  for (const s of snapshots) {
    let damaged = false;
    // the metadata objects being walked, root first: damage below marks them all
    const stack: Array<{ id: string; damaged: boolean }> = [];
    const note = (o: VisitedObject, err: unknown) => {
      damaged = true;
      for (const f of stack) f.damaged = true;
      let d = bad.get(o.id);
      if (!d) {
        d = { id: o.id, kind: o.kind, error: (err as Error).message, usedBy: [] };
        bad.set(o.id, d);
      }
      if (d.usedBy.length < MAX_USES) d.usedBy.push({ snapshot: s.id, member: o.member, path: o.path });
    };
    walkSnapshot(store, s.manifest, {
      enter(o) {
        if (bad.has(o.id)) {
          note(o, new Error(bad.get(o.id)!.error));
          return false;
        }
        if (o.kind === 'chunk') {
          if (ok.has(o.id)) return false;
          // Metadata objects are read (and so verified) by the walk itself; chunks are read here.
          try {
            const data = store.get(o.id);
            report.bytesChecked += data.length;
            report.objectsChecked++;
            ok.add(o.id);
            if (report.objectsChecked % 1000 === 0) onProgress?.(report.objectsChecked);
          } catch (err) {
            note(o, err);
          }
          return false;
        }
        if (clean.has(o.id)) return false;
        if (!dirty.has(o.id)) report.objectsChecked++;
        stack.push({ id: o.id, damaged: false });
        return true;
      },
      broken(o, err) {
        // counted when entered, but it is not sound
        report.objectsChecked--;
        note(o, err);
      },
      exit() {
        const f = stack.pop()!;
        if (f.damaged) dirty.add(f.id);
        else clean.add(f.id);
      },
    });
    if (damaged) report.damagedSnapshots.push(s.id);
  }
  report.damaged = [...bad.values()];
  return report;
}
