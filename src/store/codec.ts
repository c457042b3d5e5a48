// zstd decoding with one output piece.
//
// zlib's output chunk defaults to 16 KiB: decoding a 1 MiB object then takes
// 64 rounds through the binding and a concatenation, and an async call costs
// 64 callbacks on the main thread. An output chunk one byte larger than the
// known raw length decodes in one round and sees the end of the frame in the
// same call (exactly the raw length needs a second call to find the end).
// Measured on the benchmark's text at 1 MiB: 693 MB/s against 494 MB/s with
// the default, sync.
import { zstdDecompressSync } from 'node:zlib';

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
