// zstd for the object store: encoding when it pays (compressForStore), and
// decoding with one output piece.
//
// zlib's output chunk defaults to 16 KiB: decoding a 1 MiB object then takes
// 64 rounds through the binding and a concatenation, and an async call costs
// 64 callbacks on the main thread. An output chunk one byte larger than the
// known raw length decodes in one round and sees the end of the frame in the
// same call (exactly the raw length needs a second call to find the end).
// Measured on the benchmark's text at 1 MiB: 693 MB/s against 494 MB/s with
// the default, sync.
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';

const MAX_PIECE = 64 * 1024 * 1024;

/** zlib output chunk for a call that produces about `bytes`: one piece (bounded). */
export function outputChunk(bytes: number): number {
  return Math.min(Math.max(bytes + 1, 64), MAX_PIECE);
}

/**
 * Decode a zstd frame that should hold `rawLength` bytes. maxOutputLength keeps
 * a forged length or a zstd bomb from ballooning memory; the caller still
 * checks the decoded length.
 */
export function zstdDecodeSync(stored: Uint8Array, rawLength: number): Buffer {
  return zstdDecompressSync(stored, { maxOutputLength: Math.max(rawLength, 1), chunkSize: outputChunk(rawLength) });
}

/** Objects smaller than this are stored as they are: compression would barely pay. */
export const MIN_COMPRESS_LENGTH = 512;
/** Compressed bytes are kept only when they save at least this fraction. */
export const MIN_COMPRESS_SAVING = 0.1;
/** Objects at least this large are compressed only if a sample of them compresses. */
const COMPRESS_SAMPLE_MIN = 256 << 10;
const COMPRESS_SAMPLE_LENGTH = 32 << 10;
/** the sample must shrink to this fraction (looser than MIN_COMPRESS_SAVING: the whole may do better) */
const COMPRESS_SAMPLE_KEEP = 0.97;

/** The object's zstd frame at `level` when that saves enough to keep, else undefined (store it as it is). Level 0: never. */
export function compressForStore(raw: Uint8Array, level: number): Buffer | undefined {
  if (level === 0 || raw.length < MIN_COMPRESS_LENGTH || !worthCompressing(raw)) return undefined;
  // the size lets zstd size its tables to the object (trees are a few KiB): without it every call sets up megabytes
  const c = zstdCompressSync(raw, { pledgedSrcSize: raw.length, params: { [zc.ZSTD_c_compressionLevel]: level } });
  return c.length <= raw.length * (1 - MIN_COMPRESS_SAVING) ? c : undefined;
}

/**
 * For large objects, a quick trial on a sample: media, archives and
 * encrypted data do not compress, and zstd on them costs as much as the
 * hash. Fast level, so the trial is cheap; a miss only costs ratio.
 */
function worthCompressing(raw: Uint8Array): boolean {
  if (raw.length < COMPRESS_SAMPLE_MIN) return true;
  const sample = raw.subarray(0, COMPRESS_SAMPLE_LENGTH);
  const c = zstdCompressSync(sample, { pledgedSrcSize: sample.length, params: { [zc.ZSTD_c_compressionLevel]: 1 } });
  return c.length <= sample.length * COMPRESS_SAMPLE_KEEP;
}
