// Member-relative paths as text. Names in a snapshot are bytes and need not
// be UTF-8; an operator sees them in `snapshot diff`, capture and restore
// warnings, `verify` reports and REPLICA_MISMATCH messages, and names one
// with `restore --path`. One reversible spelling serves both ways: valid
// UTF-8 stays as it is, a byte that is not part of valid UTF-8 (or is a
// control character) is written `\xHH`, and a backslash is written `\\`.
// So any path a command prints can be given back to `--path` as it is.

const HEX = '0123456789abcdef';

/** Printable ASCII without a backslash: the common case, spelled as it is. */
function plainAscii(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c < 0x20 || c >= 0x7f || c === 0x5c) return false;
  }
  return true;
}

/** Length of the valid UTF-8 sequence starting at b[i] (a multi-byte one), or 0 if there is none. */
function utf8SequenceAt(b: Uint8Array, i: number): number {
  const c = b[i];
  let n: number;
  let min: number;
  if (c >= 0xc2 && c <= 0xdf) [n, min] = [2, 0x80];
  else if (c >= 0xe0 && c <= 0xef) [n, min] = [3, 0x800];
  else if (c >= 0xf0 && c <= 0xf4) [n, min] = [4, 0x10000];
  else return 0;
  if (i + n > b.length) return 0;
  let cp = c & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    const x = b[i + k];
    if ((x & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (x & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/** A path's bytes as text: UTF-8 as it is, `\xHH` for other bytes and control characters, `\\` for a backslash. */
export function pathToText(b: Uint8Array): string {
  if (plainAscii(b)) return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
  let out = '';
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    if (c === 0x5c) {
      out += '\\\\';
      i++;
    } else if (c >= 0x20 && c < 0x7f) {
      out += String.fromCharCode(c);
      i++;
    } else {
      const n = c >= 0x80 ? utf8SequenceAt(b, i) : 0;
      if (n > 0) {
        out += Buffer.from(b.buffer, b.byteOffset + i, n).toString('utf8');
        i += n;
      } else {
        out += `\\x${HEX[c >> 4]}${HEX[c & 15]}`;
        i++;
      }
    }
  }
  return out;
}

/**
 * Bytes of a path given as text (pathToText's spelling): `\xHH` is that byte,
 * `\\` a backslash; any other backslash is taken as it is, so a name with a
 * backslash in it can also be typed plainly.
 */
export function textToPath(s: string): Buffer {
  if (!s.includes('\\')) return Buffer.from(s);
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== '\\') continue;
    let byte: number | undefined;
    let len = 0;
    if (s[i + 1] === '\\') [byte, len] = [0x5c, 2];
    else if (s[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) [byte, len] = [parseInt(s.slice(i + 2, i + 4), 16), 4];
    if (byte === undefined) continue;
    parts.push(Buffer.from(s.slice(from, i)), Buffer.from([byte]));
    i += len - 1;
    from = i + 1;
  }
  parts.push(Buffer.from(s.slice(from)));
  return Buffer.concat(parts);
}
