// Mutations of fuzz inputs. Byte mutations are the classic havoc set (bit
// and byte flips, interesting integers written over length fields, inserts,
// deletes, splices, dictionary tokens); text mutations work on lines and
// scalar values of YAML; JSON mutations change one node of a parsed value
// (another type, a boundary number, a missing or unknown key, deep nesting).
// Structure-aware inputs (valid objects from fast-check arbitraries, made by
// the real encoders) come from each target's `generate` and are mixed in by
// the engine; these functions only transform bytes.
import { varint } from '../helpers.ts';
import type { Rng } from './rng.ts';

/** What a mutation may draw on besides the input itself. */
export interface MutationContext {
  rng: Rng;
  /** another corpus entry, for splices */
  other(): Buffer;
  /** tokens worth inserting: magics, keys, names */
  dictionary: readonly Buffer[];
  maxLength: number;
}

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40];
const INTERESTING_32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff, 4096, 65536 * 64, 64 * 1024 * 1024, 64 * 1024 * 1024 + 1, 16 * 1024 * 1024];

/** LEB128 varints worth trying: boundaries, the longest, and non-minimal encodings. */
const INTERESTING_VARINTS: Buffer[] = [
  ...[0, 1, 127, 128, 255, 16383, 16384, 4096, 4097, 65536, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 4_000_000, 16_777_216].map((n) => varint(n)),
  Buffer.from([0x80, 0x00]),
  Buffer.from([0x81, 0x80, 0x00]),
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
  Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
];

function clamp(b: Buffer, max: number): Buffer {
  return b.length > max ? b.subarray(0, max) : b;
}

function insertAt(b: Buffer, at: number, piece: Buffer): Buffer {
  return Buffer.concat([b.subarray(0, at), piece, b.subarray(at)]);
}

function overwrite(b: Buffer, at: number, piece: Buffer): Buffer {
  const out = Buffer.from(b);
  piece.copy(out, at, 0, Math.min(piece.length, out.length - at));
  return out;
}

/** One byte-level mutation. */
export function mutateBytesOnce(input: Buffer, ctx: MutationContext): Buffer {
  const { rng } = ctx;
  const n = input.length;
  const pos = () => rng.int(n);
  if (n === 0) return rng.chance(0.5) ? rng.bytes(rng.smallLength(64)) : ctx.other();
  switch (rng.int(16)) {
    case 0: {
      const out = Buffer.from(input);
      const p = pos();
      out[p] ^= 1 << rng.int(8);
      return out;
    }
    case 1: {
      const out = Buffer.from(input);
      out[pos()] = rng.u32() & 0xff;
      return out;
    }
    case 2: {
      const out = Buffer.from(input);
      out[pos()] = rng.pick(INTERESTING_8);
      return out;
    }
    case 3: {
      const out = Buffer.from(input);
      const p = pos();
      out[p] = (out[p] + rng.range(-16, 16)) & 0xff;
      return out;
    }
    case 4: {
      // a 16- or 32-bit field, either byte order, set to a boundary or to a length near the input's
      if (n < 2) return input;
      const out = Buffer.from(input);
      const wide = n >= 4 && rng.chance(0.7);
      const p = rng.int(n - (wide ? 3 : 1));
      const near = [n, n - p, n - p - 4, n * 2, 0].map((x) => x + rng.range(-2, 2));
      const v = (rng.chance(0.3) ? rng.pick(near) : rng.pick(INTERESTING_32)) >>> 0;
      if (wide) {
        if (rng.chance(0.8)) out.writeUInt32LE(v, p);
        else out.writeUInt32BE(v, p);
      } else if (rng.chance(0.8)) out.writeUInt16LE(v & 0xffff, p);
      else out.writeUInt16BE(v & 0xffff, p);
      return out;
    }
    case 5: {
      // a varint at a random place: replaces the bytes of the varint already there
      const p = pos();
      let end = p;
      while (end < n && end - p < 10 && input[end] & 0x80) end++;
      end = Math.min(n, end + 1);
      const v = rng.chance(0.3) ? varint(Math.max(0, n - end + rng.range(-2, 2))) : rng.pick(INTERESTING_VARINTS);
      return Buffer.concat([input.subarray(0, p), v, input.subarray(end)]);
    }
    case 6:
      return insertAt(input, rng.int(n + 1), rng.bytes(rng.smallLength(16)));
    case 7: {
      const len = rng.smallLength(4096);
      return insertAt(input, rng.int(n + 1), Buffer.alloc(len, rng.chance(0.5) ? rng.pick(INTERESTING_8) : rng.u32() & 0xff));
    }
    case 8: {
      const p = pos();
      const len = rng.smallLength(n - p);
      return Buffer.concat([input.subarray(0, p), input.subarray(p + len)]);
    }
    case 9: {
      const p = pos();
      const len = rng.smallLength(n - p);
      const piece = Buffer.from(input.subarray(p, p + len));
      return insertAt(input, rng.int(n + 1), piece);
    }
    case 10:
      return input.subarray(0, rng.int(n));
    case 11: {
      const o = ctx.other();
      if (o.length === 0) return input;
      return Buffer.concat([input.subarray(0, rng.int(n + 1)), o.subarray(rng.int(o.length))]);
    }
    case 12: {
      if (ctx.dictionary.length === 0) return input;
      const t = rng.pick(ctx.dictionary);
      return rng.chance(0.5) ? insertAt(input, rng.int(n + 1), t) : overwrite(input, pos(), t);
    }
    case 13: {
      // copy a run from one place to another (repeated fields, a record twice)
      const p = pos();
      const len = rng.smallLength(n - p);
      return overwrite(input, rng.int(n), Buffer.from(input.subarray(p, p + len)));
    }
    case 14: {
      const out = Buffer.from(input);
      const p = pos();
      const len = rng.smallLength(n - p);
      out.fill(rng.pick(INTERESTING_8), p, p + len);
      return out;
    }
    default: {
      // swap two slices of equal length
      const len = rng.smallLength(Math.max(1, n >> 1));
      if (len * 2 > n) return input;
      const a = rng.int(n - len + 1);
      const b = rng.int(n - len + 1);
      const out = Buffer.from(input);
      input.copy(out, b, a, a + len);
      input.copy(out, a, b, b + len);
      return out;
    }
  }
}

// ------------------------------------------------------------------- text

const INTERESTING_SCALARS = [
  '', '~', 'null', 'true', 'no', '0', '-1', '1e309', '-0', '0x1f', '0o17', '.inf', '.nan', '9007199254740993', '99999999999999999999',
  '1.5', '15q', '15m', '0s', '1h30m', '50MiB/s', '10MiB', "''", '""', '[]', '{}', '[a, b', '{a: 1', '*a', '&a x', '!!binary aGk=', '!!str 1',
  '"\\u0000"', '"\\ud800"', 'é', '/', '/tmp', '../..', 'a'.repeat(300), '- x', '? x', '|', '>', '%YAML 1.2', '---', '...', '<<: *a', '@', '`',
];

function lines(b: Buffer): string[] {
  return b.toString('utf8').split('\n');
}

/** One line- or value-level mutation of YAML-like text. */
export function mutateTextOnce(input: Buffer, ctx: MutationContext): Buffer {
  const { rng } = ctx;
  const ls = lines(input);
  const i = rng.int(ls.length);
  switch (rng.int(9)) {
    case 0:
      ls.splice(i, 1);
      break;
    case 1:
      ls.splice(i, 0, ls[rng.int(ls.length)]);
      break;
    case 2: {
      const j = rng.int(ls.length);
      [ls[i], ls[j]] = [ls[j], ls[i]];
      break;
    }
    case 3:
      ls[i] = rng.chance(0.5) ? ` ${ls[i]}` : rng.chance(0.5) ? ls[i].replace(/^ {1,2}/, '') : `\t${ls[i].trimStart()}`;
      break;
    case 4: {
      // a scalar value replaced
      const m = /^(\s*(?:- )?[^:#]*:\s*|\s*- )(.*)$/.exec(ls[i]);
      if (m) ls[i] = m[1] + rng.pick(INTERESTING_SCALARS);
      else ls[i] = rng.pick(INTERESTING_SCALARS);
      break;
    }
    case 5: {
      // a dictionary key as a new line at the indentation of a neighbour
      const indent = /^\s*/.exec(ls[i])![0];
      const key = ctx.dictionary.length ? rng.pick(ctx.dictionary).toString('utf8') : 'x';
      ls.splice(i + 1, 0, `${indent}${key}: ${rng.pick(INTERESTING_SCALARS)}`);
      break;
    }
    case 6: {
      // a line of another input
      const o = lines(ctx.other());
      ls.splice(i, rng.int(2), o[rng.int(o.length)]);
      break;
    }
    case 7: {
      // a block of lines repeated: long lists, repeated keys
      const len = rng.smallLength(Math.max(1, ls.length - i));
      const block = ls.slice(i, i + len);
      const times = rng.smallLength(64);
      ls.splice(i, 0, ...Array.from({ length: times }, () => block).flat());
      break;
    }
    default:
      return mutateBytesOnce(input, ctx);
  }
  return Buffer.from(ls.join('\n'));
}

// ------------------------------------------------------------------- JSON

const INTERESTING_JSON: unknown[] = [
  null, true, false, 0, -1, 1, 1.5, -0.5, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, -1e308, Number.MAX_SAFE_INTEGER, '', ' ', 'a', 'x'.repeat(70_000),
  '../../etc', '/', 'a/b', '\u0000', '\ud800', 'é', '01ARZ3NDEKTSV4RRFFQ69G5FAV', '0'.repeat(64), 'f'.repeat(64), [], {}, [null], [1, 2, 3], { a: 1 },
  '__proto__', 'constructor', 'toString',
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function randomJsonValue(rng: Rng, dictionary: readonly Buffer[], depth = 0): Json {
  switch (rng.int(depth > 2 ? 4 : 6)) {
    case 0:
      return rng.pick(INTERESTING_JSON) as Json;
    case 1:
      return dictionary.length ? rng.pick(dictionary).toString('utf8') : 'x';
    case 2:
      return rng.range(-5, 100000);
    case 3:
      return rng.bytes(rng.smallLength(24)).toString('latin1');
    case 4:
      return Array.from({ length: rng.smallLength(8) }, () => randomJsonValue(rng, dictionary, depth + 1));
    default: {
      const o: Record<string, Json> = {};
      for (let k = rng.smallLength(4); k > 0; k--) o[dictionary.length && rng.chance(0.8) ? rng.pick(dictionary).toString('utf8') : 'k'] = randomJsonValue(rng, dictionary, depth + 1);
      return o;
    }
  }
}

/** Every container node with its path, for picking one to change. */
function containers(v: Json, out: Array<Json[] | Record<string, Json>> = [], depth = 0): Array<Json[] | Record<string, Json>> {
  if (v !== null && typeof v === 'object' && depth < 32) {
    out.push(v);
    for (const c of Array.isArray(v) ? v : Object.values(v)) containers(c, out, depth + 1);
  }
  return out;
}

/** One structural mutation of a JSON document (byte mutation when it does not parse, or nests too deep to handle). */
export function mutateJsonOnce(input: Buffer, ctx: MutationContext): Buffer {
  try {
    return mutateJsonDocument(input, ctx);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return mutateBytesOnce(input, ctx);
  }
}

function mutateJsonDocument(input: Buffer, ctx: MutationContext): Buffer {
  const { rng } = ctx;
  let doc: Json;
  try {
    doc = JSON.parse(input.toString('utf8')) as Json;
  } catch {
    return mutateBytesOnce(input, ctx);
  }
  if (rng.chance(0.15)) return mutateBytesOnce(input, ctx);
  const nodes = containers(doc);
  if (nodes.length === 0 || rng.chance(0.05)) {
    // the whole document replaced, or wrapped deep (nesting)
    if (rng.chance(0.5)) return Buffer.from(JSON.stringify(randomJsonValue(rng, ctx.dictionary)));
    const depth = rng.smallLength(20_000);
    return Buffer.from('['.repeat(depth) + JSON.stringify(doc) + ']'.repeat(depth));
  }
  const node = rng.pick(nodes);
  if (Array.isArray(node)) {
    switch (rng.int(4)) {
      case 0:
        if (node.length) node.splice(rng.int(node.length), 1);
        break;
      case 1:
        node.splice(rng.int(node.length + 1), 0, randomJsonValue(rng, ctx.dictionary));
        break;
      case 2:
        if (node.length) node[rng.int(node.length)] = randomJsonValue(rng, ctx.dictionary);
        break;
      default: {
        // many copies of one item: limits on list lengths
        if (!node.length) break;
        const item = node[rng.int(node.length)];
        const times = rng.smallLength(5000);
        for (let k = 0; k < times; k++) node.push(item);
      }
    }
  } else {
    const keys = Object.keys(node);
    switch (rng.int(4)) {
      case 0:
        if (keys.length) delete node[rng.pick(keys)];
        break;
      case 1:
        node[ctx.dictionary.length ? rng.pick(ctx.dictionary).toString('utf8') : 'extra'] = randomJsonValue(rng, ctx.dictionary);
        break;
      default:
        if (keys.length) node[rng.pick(keys)] = randomJsonValue(rng, ctx.dictionary);
        else node[ctx.dictionary.length ? rng.pick(ctx.dictionary).toString('utf8') : 'k'] = randomJsonValue(rng, ctx.dictionary);
    }
  }
  return Buffer.from(JSON.stringify(doc));
}

export type Mutator = (input: Buffer, ctx: MutationContext) => Buffer;

/** Havoc: a stack of 1, 2, 4... mutations of one kind mix, clamped to the target's limit. */
export function havoc(input: Buffer, ctx: MutationContext, once: Mutator): Buffer {
  let out = input;
  const n = 1 << ctx.rng.int(4);
  for (let i = 0; i < n; i++) out = clamp(once(out, ctx), ctx.maxLength);
  return out;
}
